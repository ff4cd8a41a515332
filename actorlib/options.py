"""Options of ``@remote`` and ``.options()``: checked once, with messages that say what to do."""

from __future__ import annotations

from typing import Any

from actorlib.core.labels import LabelSelectorStrategy, parse_selector
from actorlib.core.specs import (
    CodeEnv,
    ExceptionTypes,
    NodeAffinitySchedulingStrategy,
    PlacementGroupStrategy,
    RetryExceptions,
)
from actorlib.core.strings import plain_str
from actorlib.exceptions import NotSupportedError
from actorlib.label_strategy import NodeLabelSchedulingStrategy
from actorlib.placement import PlacementGroupSchedulingStrategy, core_strategy
from actorlib.runtime_env_files import check_paths, code_env

TASK_OPTIONS = frozenset({
    "num_cpus", "num_gpus", "resources", "memory", "num_returns", "max_retries",
    "retry_exceptions", "name", "scheduling_strategy", "runtime_env", "max_calls",
    "_generator_backpressure_num_objects", "_concurrency",
    "placement_group", "placement_group_bundle_index", "placement_group_capture_child_tasks",
    "label_selector", "fallback_strategy", "accelerator_type", "enable_task_events",
    "object_store_memory",
})
ACTOR_OPTIONS = frozenset({
    "num_cpus", "num_gpus", "resources", "memory", "max_restarts", "max_task_retries",
    "max_concurrency", "name", "namespace", "lifetime", "get_if_exists",
    "scheduling_strategy", "runtime_env", "concurrency_groups",
    "placement_group", "placement_group_bundle_index", "placement_group_capture_child_tasks",
    "label_selector", "fallback_strategy", "accelerator_type", "max_pending_calls",
    "enable_task_events", "object_store_memory", "allow_out_of_order_execution",
})
METHOD_OPTIONS = frozenset({
    "num_returns", "max_task_retries", "retry_exceptions", "name", "concurrency_group",
    "_generator_backpressure_num_objects", "enable_task_events",
})

_RESERVED_RESOURCES = frozenset({"CPU", "GPU", "memory"})

#: What ``accelerator_type="X"`` asks of ``accelerator_type:X`` (Ray's amount): any number
#: of tasks share a node's accelerator model; ``num_gpus`` counts the devices.
ACCELERATOR_SHARE = 0.001


def _type_error(name: str, value: Any, accepted: str) -> TypeError:
    return TypeError(f"{name} must be {accepted}, got {type(value).__name__} {value!r}")


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int)


def _non_negative_number(name: str, value: Any) -> float:
    if not _is_number(value):
        raise _type_error(name, value, "a number >= 0")
    if not value >= 0:  # NaN too
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def _int_at_least(name: str, value: Any, low: int, meaning: str = "") -> int:
    accepted = f"an int >= {low}{meaning}"
    if not _is_int(value):
        raise _type_error(name, value, accepted)
    if value < low:
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return int(value)


GENERATOR_RETURNS = ("streaming", "dynamic")


def _num_returns(value: Any) -> int | str:
    accepted = 'an int >= 0, "streaming" or "dynamic"'
    if isinstance(value, str):
        if value not in GENERATOR_RETURNS:
            raise ValueError(f"num_returns must be {accepted}, got {value!r}")
        return value
    if not _is_int(value):
        raise _type_error("num_returns", value, accepted)
    if value < 0:
        raise ValueError(f"num_returns must be {accepted}, got {value!r}")
    return int(value)


def _backpressure(value: Any) -> int:
    name = "_generator_backpressure_num_objects"
    accepted = "an int >= 1 (unconsumed items at which a generator pauses), or -1 (never)"
    if not _is_int(value):
        raise _type_error(name, value, accepted)
    if value == 0 or value < -1:
        raise ValueError(f"{name} must be {accepted}, got {value!r}")
    return int(value)


def validate(options: dict[str, Any], allowed: frozenset[str], what: str) -> dict[str, Any]:
    """Check ``options`` for a task, actor or method; return a normalised copy.

    As in Ray: a value of the wrong type raises ``TypeError``, a value of the right type
    out of range raises ``ValueError``; both name the option and what it accepts.
    """
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(
            f"Unknown option(s) {', '.join(map(repr, unknown))} for {what}. "
            f"Valid options: {', '.join(sorted(allowed))}."
        )
    out = dict(options)
    _without_effect(out, for_task=allowed is TASK_OPTIONS)
    for key in ("num_cpus", "num_gpus", "memory"):
        if out.get(key) is not None:
            out[key] = _non_negative_number(key, out[key])
    if out.get("resources") is not None:
        resources = out["resources"]
        if not isinstance(resources, dict) or not all(isinstance(k, str) for k in resources):
            raise _type_error("resources", resources, "a dict of name (str) -> amount")
        clash = sorted(_RESERVED_RESOURCES & set(resources))
        if clash:
            raise ValueError(
                f"Use num_cpus/num_gpus/memory instead of resources={{{clash[0]!r}: ...}}."
            )
        out["resources"] = {plain_str(k): _non_negative_number(f"resources[{k!r}]", v)
                            for k, v in resources.items()}
    if "num_returns" in out:
        out["num_returns"] = _num_returns(out["num_returns"])
    if "_generator_backpressure_num_objects" in out:
        out["_generator_backpressure_num_objects"] = _backpressure(
            out["_generator_backpressure_num_objects"]
        )
    for key in ("max_retries", "max_restarts", "max_task_retries"):
        if key in out:
            out[key] = _int_at_least(key, out[key], -1, " (-1: forever)")
    if "max_calls" in out:
        out["max_calls"] = _int_at_least(
            "max_calls", out["max_calls"], 0,
            " (runs of the function per worker process before it is replaced; 0: no limit)",
        )
    if out.get("_concurrency") is not None:
        out["_concurrency"] = _concurrency_limit(out["_concurrency"])
    if "max_pending_calls" in out:
        limit = out["max_pending_calls"]
        accepted = "-1 (no limit) or an int >= 1 (calls of a handle not yet finished)"
        if not _is_int(limit):
            raise _type_error("max_pending_calls", limit, accepted)
        if limit == 0 or limit < -1:
            raise ValueError(f"max_pending_calls must be {accepted}, got {limit!r}")
    if out.get("accelerator_type") is not None and (
            not isinstance(out["accelerator_type"], str) or not out["accelerator_type"]):
        raise _type_error("accelerator_type", out["accelerator_type"],
                          'an accelerator model\'s name such as "A100"')
    if "max_concurrency" in out:
        out["max_concurrency"] = _int_at_least("max_concurrency", out["max_concurrency"], 1)
    if "concurrency_groups" in out:
        out["concurrency_groups"] = _concurrency_groups(out["concurrency_groups"])
    if out.get("concurrency_group") is not None and (
        not isinstance(out["concurrency_group"], str) or not out["concurrency_group"]
    ):
        raise ValueError(
            "concurrency_group must be the name of one of the actor's concurrency_groups, "
            f"got {out['concurrency_group']!r}"
        )
    if "retry_exceptions" in out:
        out["retry_exceptions"] = _retry_exceptions(out["retry_exceptions"])
    if "lifetime" in out:
        lifetime = out["lifetime"]
        if lifetime is not None and not isinstance(lifetime, str):
            raise _type_error("lifetime", lifetime, 'None, "detached" or "non_detached"')
        if lifetime not in (None, "detached", "non_detached"):
            raise ValueError(
                f'lifetime must be None, "detached" or "non_detached", got {lifetime!r}'
            )
    if "get_if_exists" in out and not isinstance(out["get_if_exists"], bool):
        raise _type_error("get_if_exists", out["get_if_exists"], "a bool")
    _legacy_placement_group(out)
    if out.get("scheduling_strategy", "DEFAULT") is None:  # unset: Ray's default
        del out["scheduling_strategy"]
    if isinstance(out.get("scheduling_strategy"), NodeLabelSchedulingStrategy) and (
        out.get("label_selector") is not None
    ):
        raise ValueError("Use either label_selector or scheduling_strategy="
                         "NodeLabelSchedulingStrategy(...), not both: both say which nodes "
                         "may run the work")
    if "scheduling_strategy" in out:
        out["scheduling_strategy"] = _strategy(out["scheduling_strategy"])
    _label_selector(out)
    if out.get("runtime_env") is not None:
        out["runtime_env"] = validate_runtime_env(out["runtime_env"])
    for key in ("name", "namespace", "accelerator_type", "concurrency_group"):
        value = out.get(key)
        if value is None:
            continue
        if key in ("name", "namespace") and not isinstance(value, str):
            raise _type_error(key, value, "a str")
        out[key] = plain_str(value)
    return out


def _without_effect(out: dict[str, Any], for_task: bool) -> None:
    """Ray's options that change nothing here, checked as Ray checks them, then dropped:
    ``enable_task_events`` (actorlib's state API reads the core's own tables, so there is
    no event stream to turn off), ``allow_out_of_order_execution`` (it lets an actor run
    calls out of order; keeping the order is allowed), ``object_store_memory`` (no
    reservation: ``None`` only for a task, deprecated for an actor, as in Ray), and a
    ``_generator_backpressure_num_objects`` of ``None`` (the default)."""
    for key in ("enable_task_events", "allow_out_of_order_execution"):
        value = out.pop(key, None)
        if value is not None and not isinstance(value, bool):
            raise _type_error(key, value, "a bool")
    if "_generator_backpressure_num_objects" in out and (
        out["_generator_backpressure_num_objects"] is None
    ):
        del out["_generator_backpressure_num_objects"]
    if "object_store_memory" in out:
        value = out.pop("object_store_memory")
        if value is None:
            return
        if not _is_int(value):
            raise _type_error("object_store_memory", value, "None")
        if for_task:
            raise ValueError("Setting 'object_store_memory' is not implemented for tasks")
        import warnings

        warnings.warn(
            "Setting 'object_store_memory' for actors is deprecated (as in Ray) and has no "
            "effect: it reserves nothing", DeprecationWarning, stacklevel=4,
        )


def _concurrency_limit(value: Any) -> tuple[str, int]:
    """``_concurrency=(key, limit)``: at most ``limit`` tasks with ``key`` on workers at
    once (what :class:`actorlib.Executor` bounds ``max_workers`` with)."""
    if (
        not isinstance(value, tuple) or len(value) != 2 or not isinstance(value[0], str)
        or not value[0] or not _is_int(value[1])
    ):
        raise _type_error("_concurrency", value, "a (key: non-empty str, limit: int) tuple")
    return (plain_str(value[0]), _int_at_least("_concurrency limit", value[1], 1))


def _concurrency_groups(value: Any) -> dict[str, int]:
    """``{"io": 2, "compute": 4}``: named groups of calls, each with its own limit."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and not isinstance(v, bool) and isinstance(v, int) and v >= 1
        for k, v in value.items()
    ):
        raise ValueError(
            "concurrency_groups must be a dict of group name -> max concurrency (an int "
            f">= 1), e.g. {{'io': 2}}; got {value!r}"
        )
    return {plain_str(k): int(v) for k, v in value.items()}


_LEGACY_PG = ("placement_group", "placement_group_bundle_index",
              "placement_group_capture_child_tasks")


def _legacy_placement_group(out: dict[str, Any]) -> None:
    """Ray's older ``placement_group=``, ``placement_group_bundle_index=`` and
    ``placement_group_capture_child_tasks=`` options, turned into the strategy they mean."""
    if not any(key in out for key in _LEGACY_PG):
        return
    group, index, capture = (out.pop(key, default) for key, default in
                             zip(_LEGACY_PG, ("default", -1, None), strict=True))
    if group == "default":
        group = None
    if group is None and index == -1 and not capture:
        return
    if out.get("scheduling_strategy") not in (None, "DEFAULT"):
        raise ValueError(
            "Use either scheduling_strategy or placement_group=..., not both (prefer "
            "scheduling_strategy=PlacementGroupSchedulingStrategy(...))."
        )
    out["scheduling_strategy"] = core_strategy(group, index, capture)


def _label_selector(out: dict[str, Any]) -> None:
    """``label_selector`` and ``fallback_strategy`` (Ray 2.49+) as the strategy they mean:
    nodes whose labels match, the fallbacks' tried in order when none has room."""
    selector = out.pop("label_selector", None)
    fallback = out.pop("fallback_strategy", None)
    if selector is None and fallback is None:
        return
    if selector is None:
        raise ValueError("fallback_strategy needs a label_selector to fall back from")
    selectors = [parse_selector(selector)]
    if fallback is not None:
        if not isinstance(fallback, (list, tuple)) or not all(
            isinstance(f, dict) for f in fallback
        ):
            raise _type_error("fallback_strategy", fallback,
                              'a list of option dicts, like [{"label_selector": {...}}]')
        for index, option in enumerate(fallback):
            extra = sorted(set(option) - {"label_selector"})
            if extra or "label_selector" not in option:
                raise ValueError(
                    f"fallback_strategy[{index}] must be {{\"label_selector\": {{...}}}} "
                    f"(the only option a fallback may change), got {option!r}"
                )
            selectors.append(
                parse_selector(option["label_selector"], f"fallback_strategy[{index}]")
            )
    base = out.get("scheduling_strategy", "DEFAULT")
    if isinstance(base, LabelSelectorStrategy):  # .options() over an earlier selector
        base = "SPREAD" if base.spread else "DEFAULT"
    if base not in ("DEFAULT", "SPREAD"):
        raise ValueError(
            'label_selector goes with scheduling_strategy "DEFAULT" or "SPREAD" only, got '
            f"{base!r}"
        )
    out["scheduling_strategy"] = LabelSelectorStrategy(tuple(selectors), base == "SPREAD")


def _strategy(strategy: Any) -> Any:
    accepted = (
        '"DEFAULT", "SPREAD", a NodeAffinitySchedulingStrategy, a '
        "PlacementGroupSchedulingStrategy or a NodeLabelSchedulingStrategy"
    )
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        if type(strategy.node_id) is str:
            return strategy
        # Exact str: the strategy travels in the work's spec (see plain_str).
        return NodeAffinitySchedulingStrategy(plain_str(strategy.node_id), strategy.soft)
    if isinstance(strategy, (PlacementGroupStrategy, LabelSelectorStrategy)):
        return strategy
    if isinstance(strategy, (PlacementGroupSchedulingStrategy, NodeLabelSchedulingStrategy)):
        return strategy._core
    if not isinstance(strategy, str):
        raise _type_error("scheduling_strategy", strategy, accepted)
    if strategy not in ("DEFAULT", "SPREAD"):
        raise ValueError(f"scheduling_strategy must be {accepted}, got {strategy!r}")
    return plain_str(strategy)


def _retry_exceptions(value: Any) -> RetryExceptions:
    if isinstance(value, (bool, ExceptionTypes)):
        return value
    if isinstance(value, (list, tuple)) and all(
        isinstance(t, type) and issubclass(t, BaseException) for t in value
    ):
        return ExceptionTypes(tuple(value))
    raise _type_error("retry_exceptions", value, "a bool or a list of exception types")


RUNTIME_ENV_FIELDS = ("env_vars", "working_dir", "py_modules", "excludes", "config")
#: The one field a job's runtime_env has that a task's or an actor's may not.
SETUP_HOOK = "worker_process_setup_hook"


def check_runtime_env_config(config: Any) -> dict[str, Any]:
    """Ray's ``RuntimeEnvConfig`` (``runtime_env["config"]``), checked as Ray checks it.

    It says how Ray installs an environment (a setup timeout, eager installs, the setup
    logs to show); actorlib's fields need no install step, so once checked it has nothing
    to act on, and code written for Ray that sets it runs unchanged.
    """
    if not isinstance(config, dict):
        raise _type_error("runtime_env['config']", config, "a dict (or a RuntimeEnvConfig)")
    unknown = sorted(set(config) - {"setup_timeout_seconds", "eager_install", "log_files"})
    if unknown:
        raise ValueError(
            f"runtime_env['config'] key(s) {', '.join(map(repr, unknown))} are unknown; "
            "expected 'setup_timeout_seconds', 'eager_install', 'log_files'"
        )
    timeout = config.get("setup_timeout_seconds", 600)
    if not _is_int(timeout) or not (timeout > 0 or timeout == -1):
        raise ValueError("runtime_env['config']['setup_timeout_seconds'] must be a positive "
                         f"int or -1 (no timeout), got {timeout!r}")
    eager = config.get("eager_install", True)
    if not isinstance(eager, bool):
        raise _type_error("runtime_env['config']['eager_install']", eager, "a bool")
    log_files = config.get("log_files", [])
    if not isinstance(log_files, list) or not all(isinstance(f, str) for f in log_files):
        raise _type_error("runtime_env['config']['log_files']", log_files, "a list of str")
    return dict(config)


def validate_runtime_env(env: Any, *, job: bool = False) -> dict[str, Any]:
    """A runtime_env checked, its paths absolute (py_modules' modules become paths).

    ``job``: the job's own (``init``, ``JobConfig``, a ``RuntimeEnv`` not yet used
    anywhere), where Ray takes ``worker_process_setup_hook`` too; a task's or an
    actor's may not name one (the hook runs once per worker process, for the job)."""
    if not isinstance(env, dict):
        raise _type_error("runtime_env", env, "a dict")
    unsupported = sorted(set(env) - set(RUNTIME_ENV_FIELDS) - {SETUP_HOOK})
    if unsupported:
        raise ValueError(
            f"runtime_env field(s) {', '.join(map(repr, unsupported))} are not supported; "
            f"actorlib supports {', '.join(map(repr, RUNTIME_ENV_FIELDS))} and, for the "
            f"whole job, {SETUP_HOOK!r}."
        )
    hook = env.get(SETUP_HOOK)
    if hook is not None:
        if not job:
            raise ValueError(
                f"runtime_env[{SETUP_HOOK!r}] applies to a whole job (it runs once in each "
                "worker process), not to one task or actor: give it to "
                f"init(runtime_env={{{SETUP_HOOK!r}: ...}})"
            )
        check_setup_hook(hook)
    if "config" in env:
        check_runtime_env_config(env["config"])
    env_vars = env.get("env_vars") or {}
    if not isinstance(env_vars, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()
    ):
        raise _type_error("runtime_env['env_vars']", env_vars, "a dict of str -> str")
    checked = {"env_vars": {plain_str(k): plain_str(v) for k, v in env_vars.items()},
               **check_paths(env)}
    if hook is not None:
        checked[SETUP_HOOK] = plain_str(hook) if isinstance(hook, str) else hook
    return checked


def check_setup_hook(hook: Any) -> None:
    """``worker_process_setup_hook``: a function, or ``"module.function"``."""
    if isinstance(hook, str):
        if "." not in hook:
            raise ValueError(
                f"{SETUP_HOOK} as a string is 'module.function', got {hook!r}"
            )
    elif not callable(hook):
        raise TypeError(f"{SETUP_HOOK} must be a function or 'module.function', got {hook!r}")


def split_setup_hook(
    runtime_env: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, Any]:
    """A job's runtime_env without its ``worker_process_setup_hook``, and the hook (None
    if it names none): the hook is ``init``'s to apply, the rest is the job's default
    runtime_env for its tasks and actors."""
    if not runtime_env or runtime_env.get(SETUP_HOOK) is None:
        return runtime_env, None
    rest = {k: v for k, v in runtime_env.items() if k != SETUP_HOOK}
    return rest or None, runtime_env[SETUP_HOOK]


def files_of(runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """The file fields of a checked runtime_env (``working_dir``, ``py_modules``, ...)."""
    return {k: v for k, v in (runtime_env or {}).items() if k != "env_vars"}


def check_backend_fields(runtime_env: dict[str, Any] | None, supported: frozenset[str],
                         backend: str) -> None:
    """Refuse, naming the option, runtime_env fields the running backend cannot apply."""
    given = [k for k in ("working_dir", "py_modules") if (runtime_env or {}).get(k) is not None]
    missing = [k for k in given if k not in supported]
    if missing:
        raise NotSupportedError(
            f"runtime_env {', '.join(map(repr, missing))} is not supported on the {backend} "
            "backend (a worker process of its own is needed for a cwd and imports of its "
            "own); use the process, cluster or ray backend (see docs/ray-compatibility.md)"
        )


def merge_code_env(own: CodeEnv | None, own_fields: dict[str, Any],
                   job: CodeEnv | None) -> CodeEnv | None:
    """The task's or actor's ``working_dir`` / ``py_modules`` where it gives them, else
    the job's (each field replaces the job's, as in Ray)."""
    if not own_fields:
        return job
    working_dir = own.working_dir if own and own.working_dir else None
    if working_dir is None and job is not None:
        working_dir = job.working_dir
    modules = (own.py_modules if own else ()) if "py_modules" in own_fields else (
        job.py_modules if job else ())
    if working_dir is None and not modules:
        return None
    return CodeEnv(working_dir, modules)


def resource_request(options: dict[str, Any], default_cpus: float) -> dict[str, float]:
    """The resources a task or actor holds while it runs (zero amounts left out)."""
    cpus = options.get("num_cpus")
    request = {
        "CPU": default_cpus if cpus is None else cpus,
        "GPU": options.get("num_gpus") or 0.0,
        "memory": options.get("memory") or 0.0,
    }
    request.update(options.get("resources") or {})
    accelerator = options.get("accelerator_type")
    if accelerator:  # as Ray: a sliver of the resource the accelerator's nodes offer
        request.setdefault(f"accelerator_type:{accelerator}", ACCELERATOR_SHARE)
    return {k: float(v) for k, v in request.items() if v}


def env_vars_of(options: dict[str, Any], job_env: dict[str, str] | None) -> dict[str, str] | None:
    env = dict(job_env or {})
    env.update((options.get("runtime_env") or {}).get("env_vars", {}))
    return env or None


class OwnFiles:
    """A remote function's or actor class's own ``working_dir`` / ``py_modules``: packed
    at its first submission, then reused by every call (as Ray uploads at ``.options()``)."""

    __slots__ = ("_env", "_fields", "_packed", "given")

    def __init__(self, runtime_env: dict[str, Any] | None) -> None:
        self._fields = files_of(runtime_env)
        #: Whether it has fields of its own (else a submission runs in the job's).
        self.given = bool(self._fields)
        self._env: CodeEnv | None = None
        self._packed = False

    def code_env(self, job: CodeEnv | None, supported: frozenset[str],
                 backend: str) -> CodeEnv | None:
        """The environment a submission runs in: its own fields, else the job's."""
        if self._fields:
            check_backend_fields(self._fields, supported, backend)
            if not self._packed:
                self._env = code_env(self._fields)
                self._packed = True
        return merge_code_env(self._env, self._fields, job)
