"""Start or join Ray: ``init(backend="ray", address=None | "auto" | "host:port" | "ray://...")``."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from typing import Any

from actorlib.backends.base import BackendConfig, Connector, RunningCore
from actorlib.exceptions import BackendUnavailableError, NotSupportedError

#: The Ray releases this backend is tested with: [lowest, below this).
SUPPORTED = ((2, 9), (3, 0))


def ray_module() -> Any:
    """Ray, typed as ``Any``: Ray ships no type information, and a directory named
    ``ray`` where mypy runs (Ray's own ``/tmp/ray``) would pass for it."""
    return importlib.import_module("ray")


def import_ray() -> Any:
    """Ray, or a clear error saying how to install a supported version."""
    try:
        ray = ray_module()
    except ImportError as exc:
        raise BackendUnavailableError(
            "The 'ray' backend needs Ray: pip install 'actorlib[ray]'"
        ) from exc
    version = _version(ray.__version__)
    if version is None:  # a development build
        return ray
    low, high = SUPPORTED
    if not low <= version < high:
        raise BackendUnavailableError(
            f"The 'ray' backend supports Ray >= {low[0]}.{low[1]}, < {high[0]}.{high[1]}; "
            f"found {ray.__version__}. pip install 'actorlib[ray]' installs one."
        )
    return ray


def _version(text: str) -> tuple[int, int] | None:
    try:
        major, minor = (int(p) for p in text.split(".")[:2])
    except ValueError:  # a development build
        return None
    return major, minor


def require_ray(least: tuple[int, int], what: str) -> None:
    """Refuse ``what`` before Ray sees it when this Ray is older than the release that
    brought it (Ray's own error would name an option the user never wrote)."""
    text = ray_module().__version__
    found = _version(text)
    if found is not None and found < least:
        raise NotSupportedError(
            f"{what} on the ray backend needs Ray >= {least[0]}.{least[1]}; this process "
            f"runs Ray {text}"
        )


def driver_job_config() -> Any:
    """Workers find the modules this driver imports, as on every backend: the driver's
    ``sys.path`` (the directories that exist) goes first on theirs, in its order.

    Through Ray's job config (``_py_driver_sys_path``, which Ray fills with the script's
    directory itself), not a job-wide ``runtime_env``: a job with a runtime_env cannot
    use the workers Ray starts ahead of time, so every first task and every actor waited
    for a new worker process (about 1.5 s for the first result on this machine)."""
    from ray.job_config import JobConfig

    paths = [p for p in sys.path if p and os.path.isdir(p)]
    # A worker inserts each at the front in turn: the last one given ends up first.
    return JobConfig(_py_driver_sys_path=list(reversed(list(dict.fromkeys(paths)))))


class RayConnector(Connector):
    """Runs actorlib's API on Ray (see :mod:`actorlib.backends.ray`)."""

    name = "ray"
    # actorlib's packages, put in Ray's package store: Ray's runtime_env takes them there.
    runtime_env_files = frozenset({"working_dir", "py_modules"})
    applies_logging_config = True  # handed to ray.init: Ray logs the driver and workers

    @classmethod
    def connect(cls, config: BackendConfig, namespace: str) -> RunningCore:
        ray = import_ray()
        from actorlib.backends.ray.client import RayCore

        output = config.options.get("output") or {}
        hook = output.get("setup_hook")
        logging_config = (output.get("logging") or {}).get("config")
        if ray.is_initialized():
            # This process already runs Ray (the program uses Ray directly too): share
            # that connection, and leave it up at shutdown().
            if (hook is not None or logging_config is not None or config.labels
                    or config.options.get("spill_root") is not None):
                raise ValueError(
                    "worker_process_setup_hook, logging_config, labels and "
                    "object_spilling_directory are set up by ray.init, which this process "
                    "has already called: pass them to ray.init (runtime_env="
                    "{'worker_process_setup_hook': ...}, logging_config=..., labels=..., "
                    "object_spilling_directory=...)"
                )
            _check_log_to_driver(ray, config)
            return RayCore(namespace, stop_ray=False)
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        log_to_driver = bool(config.options.get("log_to_driver", True))
        kwargs: dict[str, Any] = {
            "namespace": namespace, "include_dashboard": False,
            "log_to_driver": log_to_driver, "configure_logging": False,
            "job_config": driver_job_config(),
        }
        changes = None
        if logging_config is not None:  # init(logging_config=): Ray's workers log as asked
            kwargs["logging_config"] = ray_logging_config(ray, logging_config)
            from actorlib.backends.output import LoggerChanges

            changes = LoggerChanges(None, "ray")  # Ray's handlers come off at shutdown
        if hook is not None:  # Ray runs it in each of the job's workers (a job runtime_env)
            kwargs["runtime_env"] = {"worker_process_setup_hook": unpack_hook(hook)}
        if config.address is None:
            if config.labels:  # the node the new Ray instance starts, as ray.init(labels=)
                kwargs["labels"] = dict(config.labels)
            kwargs.update(num_cpus=config.num_cpus, num_gpus=config.num_gpus,
                          resources=config.resources or None,
                          object_store_memory=config.object_store_memory)
            if config.options.get("spill_root") is not None:
                kwargs["object_spilling_directory"] = config.options["spill_root"]
        else:
            if config.options.get("spill_root") is not None:
                raise ValueError(
                    "object_spilling_directory is for the Ray instance init() starts; the "
                    "nodes of an existing Ray cluster take theirs from `ray start "
                    "--object-spilling-directory`"
                )
            if config.labels:
                raise ValueError(
                    "init(labels=) labels the node a new Ray instance starts; the nodes of "
                    "an existing Ray cluster take theirs from `ray start --labels`"
                )
            from actorlib.backends.ray.address import check_address

            check_address(ray, config.address)
            kwargs["address"] = config.address
        # ray.init installs a SIGTERM handler of its own (exit status 15, no unwinding
        # through actorlib.shutdown) and ray.shutdown never removes it: keep the one
        # in place, so SIGTERM acts as on every other backend and outlives no session.
        sigterm = signal.getsignal(signal.SIGTERM)
        try:
            ray.init(**kwargs)
            if changes is not None:
                changes.keep()
        except ConnectionError as exc:
            raise ConnectionError(
                f"Cannot reach the Ray cluster at {config.address!r}: {exc}"
            ) from exc
        finally:
            if (sigterm is not None
                    and threading.current_thread() is threading.main_thread()):
                signal.signal(signal.SIGTERM, sigterm)
        return RayCore(namespace, stop_ray=True)


def forwards_worker_output(ray: Any) -> bool:
    """Whether this process's Ray connection prints its workers' output (the
    ``log_to_driver`` its ``ray.init`` was given): its log handler is installed."""
    from ray._private import ray_logging

    return any(name == "ray_print_logs"
               for name, _ in ray_logging.global_worker_stdstream_dispatcher.handlers)


def _check_log_to_driver(ray: Any, config: BackendConfig) -> None:
    """``init(log_to_driver=)`` on a Ray connection this process already opened: its
    ``ray.init`` set up (or not) the printing of workers' output, for the whole
    process, and it cannot change now. Not given: that setting holds; given otherwise:
    refused, as the other settings ``ray.init`` owns are."""
    if not config.options.get("log_to_driver_given"):
        return
    asked = bool(config.options.get("log_to_driver", True))
    current = forwards_worker_output(ray)
    if asked != current:
        raise ValueError(
            f"log_to_driver={asked}: this process's Ray connection (its ray.init, already "
            f"called) runs with log_to_driver={current}, which holds for the whole "
            f"process; pass log_to_driver={asked} to ray.init, or leave it out of "
            "actorlib.init to follow the connection"
        )


def unpack_hook(hook: bytes | str) -> Any:
    """``init(worker_process_setup_hook=)`` as Ray's runtime_env takes it: the callable
    (pickled by the session, by value if the driver's ``__main__`` defined it), or its
    ``"module.function"`` name."""
    if isinstance(hook, str):
        return hook
    import cloudpickle

    return cloudpickle.loads(hook)


def ray_logging_config(ray: Any, config: dict[str, Any]) -> Any:
    """``init(logging_config=)`` as this Ray's ``LoggingConfig`` (``ray.LoggingConfig`` is
    newer than Ray 2.9, its ``additional_log_standard_attrs`` newer still)."""
    cls = getattr(ray, "LoggingConfig", None)
    if cls is None:
        raise NotSupportedError(
            f"init(logging_config=) on the ray backend needs Ray's LoggingConfig, which "
            f"Ray {ray.__version__} does not have"
        )
    fields = {k: v for k, v in config.items() if v or k != "additional_log_standard_attrs"}
    try:
        return cls(**fields)
    except TypeError as exc:
        raise NotSupportedError(
            f"init(logging_config=) on the ray backend: Ray {ray.__version__}'s "
            f"LoggingConfig does not take {sorted(fields)}: {exc}"
        ) from exc
