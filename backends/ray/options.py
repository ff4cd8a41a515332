"""actorlib's task and actor options as Ray's ``.options()``, and the names and
concurrency groups a caller needs to reach an actor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actorlib.backends.ray.boxes import Retryable
from actorlib.backends.ray.connector import require_ray
from actorlib.core.labels import LabelSelectorStrategy, Selector
from actorlib.core.specs import (
    ActorSpec,
    CodeEnv,
    NodeAffinitySchedulingStrategy,
    PlacementGroupStrategy,
    TaskSpec,
)
from actorlib.exceptions import NotSupportedError

#: The Ray release that brought label selectors (``label_selector``, ``fallback_strategy``,
#: ``bundle_label_selector``).
LABELS_SINCE = (2, 49)

INTERNAL_PREFIX = "actorlib-actor-"


def internal_name(actor_id: int) -> str:
    """The Ray name of an actor the user did not name."""
    return f"{INTERNAL_PREFIX}{actor_id:016x}"


def groups_of(spec: ActorSpec) -> tuple[dict[str, str], frozenset[str], str]:
    """What a caller needs to route calls into concurrency groups: each method's group,
    the groups the actor declared, and its class's name (for errors)."""
    return (dict(spec.method_groups or {}), frozenset(spec.concurrency_groups or ()),
            spec.cls.name)


def countable(resources: dict[str, float]) -> dict[str, float]:
    """A Ray node's resources as actorlib's scheduler counts them (memory in bytes too)."""
    return {k: v for k, v in resources.items() if not k.startswith("node:")}


def _resource_options(resources: dict[str, float]) -> dict[str, Any]:
    rest = dict(resources)
    options: dict[str, Any] = {
        "num_cpus": rest.pop("CPU", 0.0),
        "num_gpus": rest.pop("GPU", 0.0),
    }
    memory = rest.pop("memory", 0.0)
    if memory:
        options["memory"] = memory
    custom = {k: v for k, v in rest.items() if v}
    if custom:
        options["resources"] = custom
    return options


def ray_selector(selector: Selector) -> dict[str, str]:
    """One actorlib label selector in Ray's syntax: ``{"zone": "in(a,b)", "gpu": "!t4"}``."""
    require_ray(LABELS_SINCE, "Scheduling by node labels")
    out: dict[str, str] = {}
    for key, negated, values in selector:
        if not values or key in out:
            raise NotSupportedError(
                f"label condition on {key!r}: Ray's label selectors take one In/NotIn "
                "condition per label (no Exists()/DoesNotExist()) on the ray backend"
            )
        text = values[0] if len(values) == 1 else f"in({','.join(values)})"
        out[key] = f"!{text}" if negated else text
    return out


def _labels(strategy: LabelSelectorStrategy) -> dict[str, Any]:
    """``label_selector``/``fallback_strategy`` (and NodeLabelSchedulingStrategy, which
    becomes them) as Ray's options of the same names: the first selector, then the rest
    tried in order."""
    first, *rest = strategy.selectors
    options: dict[str, Any] = {"label_selector": ray_selector(first),
                               "scheduling_strategy": "SPREAD" if strategy.spread else "DEFAULT"}
    if rest:
        options["fallback_strategy"] = [{"label_selector": ray_selector(s)} for s in rest]
    return options


#: Ray's placement group for actorlib's group id (see :mod:`.groups`).
GroupFinder = Callable[[int], Any]
#: Ray's runtime_env fields for a ``working_dir`` / ``py_modules`` (see :mod:`.packages`).
FilesEnv = Callable[[CodeEnv], dict[str, Any]]


def ray_runtime_env(env_vars: dict[str, str] | None, code_env: CodeEnv | None,
                    files: FilesEnv) -> dict[str, Any]:
    """actorlib's runtime_env as Ray's: ``env_vars``, and the files as Ray's URIs."""
    out: dict[str, Any] = {"env_vars": dict(env_vars)} if env_vars else {}
    if code_env is not None:
        out.update(files(code_env))
    return out


def _strategy(strategy: Any, find_group: GroupFinder) -> dict[str, Any]:
    if isinstance(strategy, PlacementGroupStrategy):
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy as RayGroup

        # Capturing child tasks is actorlib's (a child naming no strategy inherits its
        # parent's group at submission), so Ray is not asked to.
        return {"scheduling_strategy": RayGroup(
            find_group(strategy.group_id), strategy.bundle_index, False)}
    if isinstance(strategy, LabelSelectorStrategy):
        return _labels(strategy)
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as RayAffinity

        return {"scheduling_strategy": RayAffinity(strategy.node_id, soft=strategy.soft)}
    if strategy in ("DEFAULT", "SPREAD", None):
        return {"scheduling_strategy": strategy or "DEFAULT"}
    raise NotSupportedError(
        f"scheduling_strategy={strategy!r} is not supported on the ray backend "
        "(supported: 'DEFAULT', 'SPREAD', NodeAffinitySchedulingStrategy, "
        "NodeLabelSchedulingStrategy, PlacementGroupSchedulingStrategy, label_selector)"
    )


def task_options(spec: TaskSpec, find_group: GroupFinder, files: FilesEnv,
                 ) -> dict[str, Any]:
    options = _resource_options(spec.resources)
    options["num_returns"] = spec.num_returns
    options["max_retries"] = spec.max_retries
    options["retry_exceptions"] = [Retryable] if spec.retry_exceptions else False
    options.update(_strategy(spec.scheduling_strategy, find_group))
    if spec.name:
        options["name"] = spec.name
    runtime_env = ray_runtime_env(spec.env_vars, spec.code_env, files)
    if runtime_env:
        options["runtime_env"] = runtime_env
    return options


def actor_options(spec: ActorSpec, find_group: GroupFinder, files: FilesEnv,
                  ) -> dict[str, Any]:
    options = _resource_options(spec.resources)
    options["max_concurrency"] = spec.max_concurrency
    options["max_restarts"] = spec.max_restarts
    options["max_task_retries"] = spec.max_task_retries
    options.update(_strategy(spec.scheduling_strategy, find_group))
    # Every actor has a Ray name, so that any process can find it by its actorlib id.
    options["name"] = internal_name(spec.actor_id) if spec.name is None else spec.name
    options["namespace"] = spec.namespace
    if spec.detached:
        options["lifetime"] = "detached"
    runtime_env = ray_runtime_env(spec.env_vars, spec.code_env, files)
    if runtime_env:
        options["runtime_env"] = runtime_env
    return options
