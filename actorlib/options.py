"""Options of ``@remote`` and ``.options()``: checked once, with messages that say what to do."""

from __future__ import annotations

from typing import Any

from actorlib.core.specs import ExceptionTypes, NodeAffinitySchedulingStrategy, RetryExceptions

TASK_OPTIONS = frozenset({
    "num_cpus", "num_gpus", "resources", "memory", "num_returns", "max_retries",
    "retry_exceptions", "name", "scheduling_strategy", "runtime_env", "max_calls",
})
ACTOR_OPTIONS = frozenset({
    "num_cpus", "num_gpus", "resources", "memory", "max_restarts", "max_task_retries",
    "max_concurrency", "name", "namespace", "lifetime", "get_if_exists",
    "scheduling_strategy", "runtime_env", "concurrency_groups",
})
METHOD_OPTIONS = frozenset({
    "num_returns", "max_task_retries", "retry_exceptions", "name", "concurrency_group",
})

_RESERVED_RESOURCES = frozenset({"CPU", "GPU", "memory"})


def _non_negative_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def _retry_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < -1:
        raise ValueError(f"{name} must be an int >= -1 (-1: retry forever), got {value!r}")
    return value


def validate(options: dict[str, Any], allowed: frozenset[str], what: str) -> dict[str, Any]:
    """Check ``options`` for a task, actor or method; return a normalised copy."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(
            f"Unknown option(s) {', '.join(map(repr, unknown))} for {what}. "
            f"Valid options: {', '.join(sorted(allowed))}."
        )
    out = dict(options)
    for key in ("num_cpus", "num_gpus", "memory"):
        if out.get(key) is not None:
            out[key] = _non_negative_number(key, out[key])
    if out.get("resources") is not None:
        resources = out["resources"]
        if not isinstance(resources, dict):
            raise ValueError(f"resources must be a dict of name -> amount, got {resources!r}")
        clash = sorted(_RESERVED_RESOURCES & set(resources))
        if clash:
            raise ValueError(
                f"Use num_cpus/num_gpus/memory instead of resources={{{clash[0]!r}: ...}}."
            )
        out["resources"] = {k: _non_negative_number(f"resources[{k!r}]", v)
                            for k, v in resources.items()}
    if "num_returns" in out:
        n = out["num_returns"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"num_returns must be an int >= 0, got {n!r}")
    for key in ("max_retries", "max_restarts", "max_task_retries"):
        if key in out:
            out[key] = _retry_count(key, out[key])
    if "max_calls" in out:
        n = out["max_calls"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(
                f"max_calls must be an int >= 0 (runs of the function per worker process "
                f"before it is replaced; 0: no limit), got {n!r}"
            )
    if "max_concurrency" in out:
        n = out["max_concurrency"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"max_concurrency must be an int >= 1, got {n!r}")
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
    if "lifetime" in out and out["lifetime"] not in (None, "detached", "non_detached"):
        raise ValueError(f'lifetime must be None or "detached", got {out["lifetime"]!r}')
    if "scheduling_strategy" in out:
        strategy = out["scheduling_strategy"]
        if strategy is None:
            out["scheduling_strategy"] = "DEFAULT"
        elif strategy not in ("DEFAULT", "SPREAD") and not isinstance(
            strategy, NodeAffinitySchedulingStrategy
        ):
            raise ValueError(
                'scheduling_strategy must be "DEFAULT", "SPREAD" or a '
                f"NodeAffinitySchedulingStrategy, got {strategy!r}"
            )
    if out.get("runtime_env") is not None:
        out["runtime_env"] = validate_runtime_env(out["runtime_env"])
    for key in ("name", "namespace"):
        if out.get(key) is not None and not isinstance(out[key], str):
            raise ValueError(f"{key} must be a string, got {out[key]!r}")
    return out


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
    return dict(value)


def _retry_exceptions(value: Any) -> RetryExceptions:
    if isinstance(value, (bool, ExceptionTypes)):
        return value
    if isinstance(value, (list, tuple)) and all(
        isinstance(t, type) and issubclass(t, BaseException) for t in value
    ):
        return ExceptionTypes(tuple(value))
    raise ValueError(f"retry_exceptions must be a bool or a list of exception types, got {value!r}")


def validate_runtime_env(env: Any) -> dict[str, Any]:
    if not isinstance(env, dict):
        raise ValueError(f"runtime_env must be a dict, got {env!r}")
    unsupported = sorted(set(env) - {"env_vars"})
    if unsupported:
        raise ValueError(
            f"runtime_env field(s) {', '.join(map(repr, unsupported))} are not supported; "
            "actorlib supports runtime_env={'env_vars': {...}}."
        )
    env_vars = env.get("env_vars") or {}
    if not isinstance(env_vars, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()
    ):
        raise ValueError(f"runtime_env['env_vars'] must map str to str, got {env_vars!r}")
    return {"env_vars": dict(env_vars)}


def resource_request(options: dict[str, Any], default_cpus: float) -> dict[str, float]:
    """The resources a task or actor holds while it runs (zero amounts left out)."""
    cpus = options.get("num_cpus")
    request = {
        "CPU": default_cpus if cpus is None else cpus,
        "GPU": options.get("num_gpus") or 0.0,
        "memory": options.get("memory") or 0.0,
    }
    request.update(options.get("resources") or {})
    return {k: float(v) for k, v in request.items() if v}


def env_vars_of(options: dict[str, Any], job_env: dict[str, str] | None) -> dict[str, str] | None:
    env = dict(job_env or {})
    env.update((options.get("runtime_env") or {}).get("env_vars", {}))
    return env or None
