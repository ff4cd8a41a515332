"""This process's runtime: ``init``, ``shutdown``, and starting one on first use."""

from __future__ import annotations

import atexit
import gc
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from actorlib.backends import DEFAULT_BACKEND, load, prestart, stacks
from actorlib.core import context, metrics
from actorlib.core.exiting import mark_exiting
from actorlib.core.fds import fill_standard_fds
from actorlib.core.interruptible import SignalRelay
from actorlib.core.labels import validate_labels
from actorlib.core.strings import plain_str
from actorlib.exceptions import RuntimeClosedError

# The runtime's own modules (the backend interface, the core, asyncio) are imported by
# init(), after it has started the first worker: its interpreter then boots while this
# process imports them (see backends.prestart).
if TYPE_CHECKING:
    import socket

    from actorlib.backends.base import Backend, Connector, RunningCore
    from actorlib.backends.process.launch import Launched
    from actorlib.core.context import Client
    from actorlib.core.specs import CodeEnv
    from actorlib.job_config import JobConfig
    from actorlib.logging_config import LoggingConfig


_lock = threading.RLock()
_runtime: RunningCore | None = None
_state_server: Any = None  # a local core's state socket (backends/state_socket.py)
_dashboard: Any = None  # init(dashboard=True)'s server (backends/dashboard/server.py)
_backend_name = ""
_job_env: dict[str, str] | None = None
_job_code_env: CodeEnv | None = None
_env_support: tuple[frozenset[str], str] = (frozenset({"working_dir", "py_modules"}), "")
# Signals that end a script like Ctrl-C does, once init() has installed our handler.
_TERMINATING = (signal.SIGTERM, signal.SIGHUP)
_handled: list[signal.Signals] = []  # those whose handler is ours (installed by init)
_relay: SignalRelay | None = None  # wakes the main thread for them (see SignalRelay)
_stopping = False  # shutdown() is running: a terminating signal waits for it to end
_pending_signal: int | None = None
_ended_by_signal = False  # a SIGTERM/SIGHUP is unwinding the script (see ended_by_signal)

# Ray's init() options that have no meaning here; accepted so Ray scripts run unchanged.
# (``_metrics_export_port``: actorlib's metrics are served by the dashboard, at /metrics.)
_IGNORED_RAY_OPTIONS = frozenset({
    "logging_level", "logging_format", "configure_logging", "_temp_dir", "_system_config",
    "local_mode", "_metrics_export_port", "_node_ip_address", "_node_name", "_skip_env_hook",
})


@dataclass
class RuntimeInfo(Mapping[str, Any]):
    """What ``init()`` returns; also a context manager that shuts the runtime down.

    Like Ray's ``RayContext`` it reads as the address-info mapping too
    (``info["address"]``, ``info.address_info``). ``dashboard_url`` (also ``webui_url``):
    the dashboard's address with its token when ``init(dashboard=True)``, else None.
    """

    backend: str
    namespace: str
    nodes: list[str] = field(default_factory=list)
    resources: dict[str, float] = field(default_factory=dict)
    address: str | None = None  # a cluster's head, host:port
    node_ip_address: str | None = None  # the first node's, as nodes() reports it
    dashboard_url: str | None = None

    @property
    def address_info(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "namespace": self.namespace,
            "node_id": self.nodes[0] if self.nodes else None,
            "node_ip_address": self.node_ip_address,
            "address": self.address, "gcs_address": self.address,
            "webui_url": self.dashboard_url,
        }

    def __getitem__(self, key: str) -> Any:
        return self.address_info[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.address_info)

    def __len__(self) -> int:
        return len(self.address_info)

    def __enter__(self) -> RuntimeInfo:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        shutdown()

    def disconnect(self) -> None:
        shutdown()


def init(
    backend: str | None = None,
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    resources: dict[str, float] | None = None,
    namespace: str | None = None,
    object_store_memory: int | None = None,
    ignore_reinit_error: bool = False,
    runtime_env: dict[str, Any] | None = None,
    address: str | None = None,
    worker_timeout_s: float | None = None,
    job_config: JobConfig | None = None,
    log_to_driver: bool | None = None,
    worker_process_setup_hook: Callable[[], Any] | str | None = None,
    labels: dict[str, str] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    dashboard: bool = False,
    dashboard_host: str = "127.0.0.1",
    dashboard_port: int | None = None,
    include_dashboard: bool | None = None,
    logging_config: LoggingConfig | None = None,
    object_spilling_directory: str | os.PathLike[str] | None = None,
    **ray_options: Any,
) -> RuntimeInfo:
    """Start actorlib in this process, on ``backend``.

    The default is ``$ACTORLIB_BACKEND`` if set, else ``process``. ``worker_timeout_s``
    (default ``$ACTORLIB_WORKER_TIMEOUT_S``, else off): a worker process silent for that
    long is taken for frozen and killed, so its work is retried elsewhere.
    ``address``: a cluster's head (``"host:port"``, or ``"auto"``: this machine's) to join;
    ``"local"`` (Ray's) starts a runtime of this process's own on ``backend`` even where
    ``$ACTORLIB_ADDRESS`` names a cluster. ``job_config`` (Ray's ``JobConfig``) supplies
    ``namespace`` and ``runtime_env`` where those arguments are not given.

    ``log_to_driver`` (default True): what tasks and actors print (and log) is written
    through this process's ``sys.stdout``/``sys.stderr``, each line prefixed with the
    task or actor and its pid; False leaves worker processes' output on the file
    descriptors they inherited, unprefixed. On the ray backend in a process that called
    ``ray.init`` itself, that connection's setting holds (not given: followed; given
    otherwise: ``ValueError``). ``worker_process_setup_hook`` (a function, or
    ``"module.function"``) runs in every worker process before its first task.
    ``labels``: this node's labels (``{"zone": "a"}``), which ``label_selector`` matches;
    for a cluster's nodes, ``actorlib start --labels zone=a``. ``log_dir``: a directory
    where each worker keeps a log file of what it printed, ``worker-<pid>.log``, rotated
    (a cluster's workers keep theirs in the session's ``logs/`` directory).

    ``dashboard`` (Ray's ``include_dashboard`` too): serve the live web dashboard from
    this process on ``dashboard_host`` (default 127.0.0.1) and ``dashboard_port``
    (default Ray's 8265, or a free port if that is taken); its URL, token included, is
    printed and returned as ``dashboard_url``. Needs the ``dashboard`` extra (aiohttp).

    ``logging_config`` (Ray's ``LoggingConfig``): the root logger of this process and of
    every worker process of the job writes TEXT or JSON lines at its level, each with the
    job, worker, node, task and actor it came from; in effect until ``shutdown()``.

    ``object_spilling_directory`` (Ray's): where objects spill to disk once the store is
    full (default: the temporary directory), in a directory of the runtime's own there,
    removed at ``shutdown()``; made if missing. For the runtime this call starts: the
    nodes of a cluster it joins spill where ``actorlib start
    --object-spilling-directory`` says. The thread and sim backends keep objects in
    memory and spill none.
    """
    global _runtime, _job_env, _backend_name, _state_server, _job_code_env, _env_support
    global _dashboard
    unknown = sorted(set(ray_options) - _IGNORED_RAY_OPTIONS)
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s): {', '.join(unknown)}")
    if logging_config is not None:
        from actorlib.logging_config import LoggingConfig

        if not isinstance(logging_config, LoggingConfig):
            raise TypeError(
                f"logging_config: expected a LoggingConfig, got {type(logging_config).__name__}"
            )
    if job_config is not None:
        from actorlib.job_config import JobConfig

        if not isinstance(job_config, JobConfig):
            raise TypeError(
                f"init(job_config=) takes an actorlib.job_config.JobConfig, got {job_config!r}"
            )
        namespace = namespace if namespace is not None else job_config.ray_namespace
        runtime_env = runtime_env if runtime_env is not None else job_config.runtime_env
    # Ray's way to give the hook: in the job's runtime_env (init's argument too).
    from actorlib.options import SETUP_HOOK, split_setup_hook

    runtime_env, env_hook = split_setup_hook(runtime_env)
    if env_hook is not None:
        if worker_process_setup_hook is not None and worker_process_setup_hook != env_hook:
            raise ValueError(
                f"init() got two different {SETUP_HOOK}s: one as an argument, one in "
                "runtime_env; give one"
            )
        worker_process_setup_hook = env_hook
    if namespace is not None:
        if not isinstance(namespace, str):
            raise TypeError(f"namespace must be None or a str, got {type(namespace).__name__} "
                            f"{namespace!r}")
        # Exact str, as every string that travels to workers or a cluster's head: a
        # subclass of this script's own would not unpickle there (see plain_str).
        namespace = plain_str(namespace)
    if resources is not None:
        clash = {"CPU", "GPU"} & set(resources)
        if clash:
            raise ValueError("Use num_cpus=/num_gpus= rather than resources={'CPU'/'GPU'}.")
        resources = {plain_str(k) if isinstance(k, str) else k: v for k, v in resources.items()}
    for label, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"{label} must be a non-negative number, got {value!r}")
    if object_store_memory is not None and (
        isinstance(object_store_memory, bool) or not isinstance(object_store_memory, int)
        or object_store_memory < 0
    ):
        # Else a negative size made a store of negative capacity, every large object
        # "too big" for it, and a string a TypeError from deep in the store.
        raise ValueError("object_store_memory must be a non-negative int (bytes), got "
                         f"{object_store_memory!r}")
    if worker_timeout_s is not None and (
        isinstance(worker_timeout_s, bool) or not isinstance(worker_timeout_s, (int, float))
        or not worker_timeout_s > 0
    ):
        raise ValueError(
            f"worker_timeout_s must be a positive number of seconds, got {worker_timeout_s!r}"
        )
    serve_dashboard = _check_dashboard(dashboard, include_dashboard, dashboard_host,
                                       dashboard_port)
    # Before any daemon, worker or socket is made: see fill_standard_fds.
    fill_standard_fds()
    with _lock:
        if _runtime is not None:
            if ignore_reinit_error:
                return _info(_runtime)
            raise RuntimeError(
                "actorlib is already initialized; call shutdown() first, or pass "
                "ignore_reinit_error=True."
            )
        worker_of = context.current()
        if worker_of is not None:
            # A worker process (its tasks and actors already use the runtime that runs
            # them): a runtime of its own here would take their nested work elsewhere,
            # and outlive the driver's shutdown for a moment (Ray's workers refuse too).
            if ignore_reinit_error:
                return _worker_info(worker_of)
            raise RuntimeError(
                "actorlib is already initialized: this process is a worker, and its tasks "
                "and actors use the runtime that runs them. Pass ignore_reinit_error=True "
                "to go on with it."
            )
        if address == "local":
            # Ray's "start a runtime of my own, even if a cluster is around": no address,
            # and $ACTORLIB_ADDRESS is not looked at.
            address = None
        elif backend is None and (address is not None or os.environ.get("ACTORLIB_ADDRESS")):
            backend = "cluster"
        name = backend or os.environ.get("ACTORLIB_BACKEND") or DEFAULT_BACKEND
        # The first worker starts now, before the imports below (killed if init fails).
        warm = prestart(name)
        # No cyclic collection while the runtime's modules are imported and its threads
        # start: what they allocate is kept for good, and each of the dozens of
        # collections those allocations would set off scans it all again (about a tenth
        # of init's CPU). A collector the program turned off stays off.
        collecting = gc.isenabled()
        gc.disable()
        stacks.prepare_driver()  # here: the runtime's threads may not set handlers
        try:
            rt, backend_cls, env, code_env = _start(
                name, warm, namespace or "default", runtime_env, labels, log_dir,
                num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
                object_store_memory=object_store_memory, address=address,
                worker_timeout_s=worker_timeout_s, log_to_driver=log_to_driver,
                worker_process_setup_hook=worker_process_setup_hook,
                logging_config=logging_config, spill_root=object_spilling_directory,
            )
        except BaseException:
            stacks.unprepare_driver()
            if warm is not None:
                warm.discard()
            from actorlib.backends.output import remove_driver_logging

            remove_driver_logging()  # applied by _start, if it got that far
            raise
        finally:
            if collecting:
                gc.enable()
        if serve_dashboard:
            try:
                _dashboard = _start_dashboard(rt, name, dashboard_host, dashboard_port)
            except BaseException:
                server, _state_server = _state_server, None
                if server is not None:
                    server.stop()
                rt.shutdown()
                stacks.unprepare_driver()
                from actorlib.backends.output import remove_driver_logging

                remove_driver_logging()  # init(logging_config=)'s, applied by _start
                raise
        atexit.register(_shutdown_at_exit, rt)
        _runtime = rt
        _install_signal_handlers()
        _backend_name = name
        _job_env = env
        _job_code_env = code_env
        _env_support = (backend_cls.runtime_env_files, name)
        metrics.pending.reset()  # a batch the last runtime never answered is gone with it
        context.install(rt)
        return _info(rt)


def _start(
    name: str, warm: Launched | None, namespace: str, runtime_env: dict[str, Any] | None,
    labels: dict[str, str] | None, log_dir: Any, *, num_cpus: float | None,
    num_gpus: float | None, resources: dict[str, float] | None,
    object_store_memory: int | None, address: str | None, worker_timeout_s: float | None,
    log_to_driver: bool | None, worker_process_setup_hook: Callable[[], Any] | str | None,
    logging_config: LoggingConfig | None = None,
    spill_root: str | os.PathLike[str] | None = None,
) -> tuple[RunningCore, type[Backend] | type[Connector], dict[str, str] | None, CodeEnv | None]:
    """Validate the rest of init()'s arguments, then start (or connect to) the core."""
    global _state_server
    from actorlib import runtime_env_files
    from actorlib.backends.base import BackendConfig, Connector
    from actorlib.options import check_backend_fields, validate_runtime_env

    backend_cls = load(name)
    checked = validate_runtime_env(runtime_env) if runtime_env else None
    env = checked["env_vars"] if checked else None
    check_backend_fields(checked, backend_cls.runtime_env_files, name)
    code_env = runtime_env_files.code_env(checked)  # packed once, for the whole job
    options: dict[str, Any] = {"worker_timeout_s": worker_timeout_s} if worker_timeout_s else {}
    options["log_to_driver"] = log_to_driver is not False
    # Whether the caller chose it (a Ray connection already open has a setting of its own).
    options["log_to_driver_given"] = log_to_driver is not None
    options["output"] = _output_options(
        log_to_driver is not False, worker_process_setup_hook, logging_config,
        in_driver=not getattr(backend_cls, "applies_logging_config", False),
    )
    if log_dir is not None:
        if issubclass(backend_cls, Connector):
            raise ValueError(
                f"log_dir: the {name} backend's workers keep their logs where their "
                "nodes run (a cluster: its session's logs/ directory); log_dir is for "
                "the thread, process and sim backends"
            )
        options["log_dir"] = _log_dir(log_dir)
    if spill_root is not None:
        options["spill_root"] = directory_argument(spill_root, "object_spilling_directory")
    if warm is not None:
        options["prestarted"] = warm  # the backend's first worker (backends.prestart)
    config = BackendConfig(
        num_cpus=num_cpus, num_gpus=num_gpus, resources=dict(resources or {}),
        object_store_memory=object_store_memory, address=address, options=options,
        labels=validate_labels(labels or {}, "init(labels=)"),
    )
    rt: RunningCore
    if issubclass(backend_cls, Connector):  # the core lives elsewhere (a cluster's head)
        rt = backend_cls.connect(config, namespace)
    else:
        # Imported here: worker processes import this module but never run a core.
        from actorlib.core.runtime import Runtime

        rt = Runtime(backend_cls(), config, namespace)
        rt.start()
    from actorlib.backends import state_socket

    if state_socket.enabled(backend_cls.serves_state):  # `actorlib list` elsewhere
        _state_server = state_socket.StateServer(rt.state_rows)
        _state_server.start()
    return rt, backend_cls, env, code_env


def _check_dashboard(dashboard: bool, include_dashboard: bool | None, host: str,
                     port: int | None) -> bool:
    """Whether to serve the dashboard; bad options fail before anything starts."""
    for label, flag in (("dashboard", dashboard), ("include_dashboard", include_dashboard)):
        if flag is not None and not isinstance(flag, bool):
            raise TypeError(f"init({label}=) takes True or False, got {flag!r}")
    if not isinstance(host, str) or not host:
        raise ValueError(f"init(dashboard_host=) takes an interface to bind, got {host!r}")
    if port is not None and (
        isinstance(port, bool) or not isinstance(port, int) or not 0 <= port < 65536
    ):
        raise ValueError(f"init(dashboard_port=) takes an int from 0 to 65535 (0: any free "
                         f"port), got {port!r}")
    return bool(dashboard or include_dashboard)


def _start_dashboard(rt: RunningCore, backend: str, host: str, port: int | None) -> Any:
    """Serve the dashboard of ``rt``'s state rows; print where (as Ray does)."""
    import sys

    from actorlib.backends.dashboard import server

    rt.state_rows("nodes")  # a backend without the state API says so now, not in a page
    where = f"cluster {rt.address}" if rt.address else f"{backend} backend"
    dashboard = server.start(rt.state_rows, host=host, port=port,
                             source=f"driver pid {os.getpid()} · {where}")
    print(f"actorlib: dashboard at {dashboard.url}", file=sys.stderr, flush=True)
    return dashboard


def _log_dir(log_dir: Any) -> str:
    """``init(log_dir=)`` as an absolute path, made (mode 0700) if missing."""
    return directory_argument(log_dir, "log_dir")


def directory_argument(given: Any, name: str) -> str:
    """A directory argument (of ``init()``, of ``actorlib start``) as an absolute path,
    made (mode 0700) if missing; a clear error if it cannot be written."""
    if not isinstance(given, (str, os.PathLike)) or not os.fspath(given):
        raise TypeError(f"{name} must be a directory path, got {given!r}")
    path = os.path.abspath(os.fspath(given))
    try:
        os.makedirs(path, 0o700, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"{name}: cannot use {path}: {exc}") from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: {path} is not a writable directory")
    return plain_str(path)


def _output_options(
    log_to_driver: bool, hook: Callable[[], Any] | str | None,
    logging_config: LoggingConfig | None = None, in_driver: bool = True,
) -> dict[str, Any]:
    """What worker processes need to know about output, logging and the setup hook
    (a ``logging_config`` is applied here, in the driver, first, unless the backend
    applies it itself: ``not in_driver``)."""
    from actorlib.backends.output import apply_driver_logging, driver_logging
    from actorlib.options import check_setup_hook

    packed: bytes | str | None = None
    if hook is not None:
        check_setup_hook(hook)
    if isinstance(hook, str):
        packed = plain_str(hook)
    elif hook is not None:
        import cloudpickle

        try:
            packed = cloudpickle.dumps(hook)
        except Exception as exc:
            raise TypeError(f"worker_process_setup_hook {hook!r} cannot be pickled: {exc}") from exc
    config = None if logging_config is None else logging_config.to_dict()
    if config is not None and in_driver:
        apply_driver_logging(config)
    return {"log_to_driver": log_to_driver, "logging": driver_logging(config),
            "setup_hook": packed}


def _info(rt: RunningCore) -> RuntimeInfo:
    nodes = rt.nodes()
    return RuntimeInfo(
        _backend_name, rt.namespace, [n.node_id for n in nodes], rt.cluster_resources(),
        rt.address, nodes[0].address if nodes else None,
        _dashboard.url if _dashboard is not None else None,
    )


def _worker_info(current: Client) -> RuntimeInfo:
    """What ``init(ignore_reinit_error=True)`` gives in a worker: the runtime it serves,
    as its tasks see it (no backend name: the worker's is the driver's business)."""
    nodes = current.nodes()
    return RuntimeInfo(
        "", current.namespace, [n.node_id for n in nodes], current.cluster_resources(),
        None, nodes[0].address if nodes else None,
    )


def _shutdown_at_exit(rt: RunningCore) -> None:
    """A script that never called shutdown() still stops its workers cleanly on exit.

    Promptly: the interpreter is going away, so backends abandon threads still running
    user code (they cannot be killed) instead of waiting for them.
    """
    if _runtime is rt:
        mark_exiting()
        try:
            shutdown()
        except SystemExit:
            pass  # a signal during the cleanup: the interpreter is exiting anyway


def _install_signal_handlers() -> None:
    """Make SIGTERM and SIGHUP unwind the script like Ctrl-C, so ``shutdown`` runs.

    Their default action kills the driver at once, leaving its shared-memory files and
    a private cluster behind. Only from the main thread (the only one allowed to), and
    only where the user has not installed a handler of their own.
    """
    global _relay
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _TERMINATING:
        if sig not in _handled and signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _on_terminating_signal)
            _handled.append(sig)
    if _relay is None:
        _relay = SignalRelay()


def _restore_signal_handlers() -> None:
    global _relay
    if _relay is not None:  # its thread ends wherever shutdown() runs (an Executor's)
        _relay.stop()
        _relay = None
    stacks.unprepare_driver()
    if threading.current_thread() is not threading.main_thread():
        return  # the handler stays; with no runtime it acts as the default would
    for sig in list(_handled):
        if signal.getsignal(sig) is _on_terminating_signal:
            signal.signal(sig, signal.SIG_DFL)
        _handled.remove(sig)


def _on_terminating_signal(signum: int, frame: object) -> None:
    """Exit with status 128+signum by unwinding (``finally`` blocks and atexit run).

    A signal arriving while shutdown() runs is kept until it is done: raising there
    would cut the cleanup short.
    """
    global _pending_signal, _ended_by_signal
    if _stopping:
        _pending_signal = signum
        return
    if _runtime is None:  # nothing to clean up: behave exactly as the default action
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _ended_by_signal = True
    raise SystemExit(128 + signum)


def ended_by_signal() -> bool:
    """Whether a SIGTERM or SIGHUP is ending the script (by unwinding it): at exit, work
    in flight is not waited for (an ``Executor``'s, see ``executor._finish_at_exit``)."""
    return _ended_by_signal


def shutdown() -> None:
    """Stop every task and actor and free every resource. Safe to call twice.

    Not from inside a task or an actor (``RuntimeError``): the runtime is its driver's.
    """
    global _runtime, _job_env, _stopping, _pending_signal, _state_server, _job_code_env
    global _dashboard
    from actorlib.core.execution_context import current_execution

    if current_execution.get() is not None or (
        _runtime is None and context.current() is not None
    ):
        # On the thread backend this would stop the driver's runtime under its feet
        # (and wait for the very thread that asked); in a worker process it would do
        # nothing. Either way a mistake, said at once.
        raise RuntimeError(
            "shutdown() was called inside a task or an actor: the runtime belongs to the "
            "driver that started it, which shuts it down."
        )
    with _lock:
        rt = _runtime
        _runtime = None
        for server in (_dashboard, _state_server):
            if server is not None:
                server.stop()
        _dashboard = _state_server = None
        _job_env = None
        _job_code_env = None
        if context.current() is rt:
            context.install(None)
        _stopping = True
        try:
            if rt is not None:
                rt.shutdown()
            from actorlib.core.waiting import completer

            completer.stop()
        finally:
            _stopping = False
            _restore_signal_handlers()
            from actorlib.backends.output import remove_driver_logging

            remove_driver_logging()  # init(logging_config=)'s handler, if any
        signum, _pending_signal = _pending_signal, None
    if signum is not None:
        raise SystemExit(128 + signum)  # the signal that arrived meanwhile ends the script


def is_initialized() -> bool:
    return context.current() is not None


def client() -> Client:
    """The runtime to talk to; starts the default one on first use (like Ray)."""
    current = context.current()
    if current is not None:
        return current
    from actorlib.core.execution_context import current_execution

    if current_execution.get() is not None:
        # Code still running in a worker of a runtime that was shut down must not
        # start a fresh runtime behind the user's back.
        raise RuntimeClosedError("actorlib was shut down while this task was running.")
    with _lock:
        if context.current() is None:
            init()
    current = context.current()
    assert current is not None
    return current


def job_env() -> dict[str, str] | None:
    # (``RemoteFunction.remote`` reads ``_job_env`` itself.)
    return _job_env


def job_code_env() -> CodeEnv | None:
    """The job's ``working_dir`` / ``py_modules``, packed at ``init``; in a worker
    process, the environment it was started in."""
    return _job_code_env or context.inherited_code_env


def env_support() -> tuple[frozenset[str], str]:
    """The runtime_env file fields this process's backend applies, and its name. In a
    worker (no ``init`` here) every field passes: the core's backend runs the work."""
    return _env_support


def temp_dir() -> str:
    """Where actorlib keeps its files on this machine (drivers' state sockets, worker
    stacks, ``actorlib start``'s sessions): ``get_runtime_context().get_temp_dir()``."""
    from actorlib.backends.cluster.sessions import sessions_root

    return sessions_root()


def private_listener(name: str) -> tuple[socket.socket, str]:
    """A Unix socket listening at ``name`` in :func:`temp_dir`, which is made if missing
    and checked to be this user's alone (mode 0700): a socket only this user may reach.
    The socket and its path; ``PermissionError`` for a directory that is not private."""
    from actorlib.backends.cluster.sessions import checked_root
    from actorlib.backends.private_dir import unix_listener

    root = checked_root(create=True)
    assert root is not None  # made if missing
    path = os.path.join(root, name)
    return unix_listener(path, 1), path


def runtime() -> RunningCore | None:
    return _runtime
