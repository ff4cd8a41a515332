"""Workers' stdout, stderr and log records, shown by the driver that owns the work.

Every line a task or actor writes reaches the driver prefixed with what wrote it, as in
Ray: ``(square pid=4242) hello``, ``(Counter pid=4243, node=1f2e...) hello`` on a cluster.

- In a worker process, :class:`LineSender` replaces ``sys.stdout``/``sys.stderr``: it
  keeps a partial line per thread and sends each complete line (prefixed with the task or
  actor running on that thread) as one ``Output`` message. Text written to file
  descriptors 1 and 2 directly (C code, subprocesses) is read from a pipe by a thread
  (:func:`capture_fds`) and sent the same way, named after the last task or actor the
  worker was given.
- In the driver, :class:`OutputWriter` writes that text through the driver's *current*
  ``sys.stdout``/``sys.stderr`` (so ``redirect_stdout``, notebooks and pytest's capture
  see it) on a thread of its own: a driver whose stdout is a full pipe or a paused
  terminal blocks that thread, never the core loop. The backend holds back the messages
  a worker sent after its output until the output is written, so a task's output is
  written before its result is delivered.
- On the thread backend tasks run in the driver: :class:`PrefixingStream` wraps the
  driver's streams while the runtime runs and prefixes only lines written from inside a
  task or actor; everything else passes straight through.
- :func:`driver_logging` and :func:`apply_logging` carry the driver's root logging level
  and format to worker processes, so ``log.info`` in a task shows in the driver (as a
  formatted line on stderr) when the driver logs at INFO.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import pickle
import queue
import select
import sys
import threading
import time
from _thread import get_ident
from collections.abc import Callable
from typing import Any, TextIO

from actorlib.backends.log_files import RotatingLog, worker_log
from actorlib.core.execution_context import ExecutionContext, current_execution
from actorlib.core.interruptible import shield_signals
from actorlib.core.specs import ActorSpec, TaskSpec

STDOUT = "stdout"
STDERR = "stderr"


def work_name(ctx: ExecutionContext | None) -> str:
    """The name a line is prefixed with: the task's function, or the actor's class."""
    if ctx is None:
        return ""
    spec = ctx.spec
    if isinstance(spec, ActorSpec):
        return spec.cls.name.rpartition(".")[2]
    if isinstance(spec, TaskSpec):
        return spec.name.rpartition(".")[2]
    return ""


def make_prefix(name: str, pid: int, node: str | None) -> str:
    """``(square pid=4242)``, ``(pid=4242)``, ``(Counter pid=4243, node=ab12)``."""
    head = f"{name} pid={pid}" if name else f"pid={pid}"
    return f"({head}, node={node})" if node else f"({head})"


def whole_lines(pending: dict[int, str], s: str) -> str:
    """The complete lines ``s`` ends for the calling thread ("" if none); the rest of its
    line waits in ``pending``. Per thread: lines of concurrent tasks never mix."""
    ident = get_ident()
    if "\n" not in s:
        if s:
            pending[ident] = pending.get(ident, "") + s
        return ""
    text = pending.pop(ident, "") + s
    end = text.rindex("\n") + 1
    if end < len(text):
        pending[ident] = text[end:]
    return text[:end]


def prefix_lines(prefix: str, text: str) -> str:
    """Prefix every line of ``text``, which ends with a newline."""
    return "".join(f"{prefix} {line}\n" for line in text[:-1].split("\n"))


# == in a worker process =========================================================================


class LineSender(io.TextIOBase):
    """A worker's ``sys.stdout``/``sys.stderr``: complete lines go to the driver.

    Line-buffered per thread, so the lines of tasks running side by side never mix. A
    line without its newline waits for one, or for ``flush()``, which ends it.
    ``send(stream, text, owner)`` gets whole prefixed lines and the id of the task or
    actor that wrote them (0 if none), which a cluster uses to find the owning driver.
    """

    def __init__(
        self, stream: str, send: Callable[[str, str, int], None], pid: int,
        node: str | None, fd: int | None = None,
    ) -> None:
        super().__init__()
        self._stream = stream
        self._send = send
        self._pid = pid
        self._node = node
        self._fd = fd
        self._pending: dict[int, str] = {}  # thread id -> its unfinished line

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return "strict"

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        if self._fd is None:
            raise io.UnsupportedOperation("fileno")
        return self._fd  # captured too (capture_fds), with a name less exact

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        lines = whole_lines(self._pending, s)
        if lines:
            self._emit(lines)
        return len(s)

    def flush(self) -> None:
        text = self._pending.pop(get_ident(), "")
        if text:
            self._emit(text + "\n")

    def flush_all(self) -> None:
        """Every thread's unfinished line (the worker is exiting)."""
        for ident in list(self._pending):
            text = self._pending.pop(ident, "")
            if text:
                self._emit(text + "\n")

    def _emit(self, text: str) -> None:
        ctx = current_execution.get()
        owner = 0
        if ctx is not None:
            owner = ctx.actor_id if ctx.actor_id is not None else ctx.task_id or 0
        self._send(self._stream, prefix_lines(make_prefix(work_name(ctx), self._pid, self._node),
                                              text), owner)


def capture_fds(
    send: Callable[[str, str, int], None], describe: Callable[[], tuple[str, int]],
) -> Callable[[], None]:
    """Send what is written to file descriptors 1 and 2 (C code, subprocesses) too.

    Each is pointed at a pipe read by a thread; ``describe()`` gives the prefix and the
    owner to use (the reader cannot tell which thread wrote). Returns a function that
    flushes C's stdio, closes the pipes and waits briefly for the readers to send what is
    left: call it before the process exits.
    """
    readers: list[threading.Thread] = []
    # Told to stop, a reader sends what the pipe holds and returns, without waiting for
    # EOF: a child the user code started (a subprocess, a forked process) may hold the
    # pipe's write end for as long as it lives.
    stop_read, stop_write = os.pipe()
    for fd, stream in ((1, STDOUT), (2, STDERR)):
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)
        reader = threading.Thread(
            target=_read_fd, args=(read_end, stream, send, describe, stop_read),
            name=f"actorlib-{stream}", daemon=True,
        )
        reader.start()
        readers.append(reader)

    def finish() -> None:
        import ctypes  # at a worker's end only: not on every driver's start

        try:
            ctypes.CDLL(None).fflush(None)  # C's buffered stdio (printf to a pipe)
        except (OSError, AttributeError):
            pass
        for fd in (1, 2):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)  # the pipe's last write end closes: its reader sees EOF
            os.close(null)
        os.write(stop_write, b"x")  # unless a child holds it: then this stops the reader
        deadline = time.monotonic() + 1.0
        for reader in readers:
            reader.join(max(0.0, deadline - time.monotonic()))

    return finish


def _read_fd(
    fd: int, stream: str, send: Callable[[str, str, int], None],
    describe: Callable[[], tuple[str, int]], stop: int,
) -> None:
    pending = b""
    stopping = False
    while True:
        if not stopping:
            try:
                readable, _, _ = select.select([fd, stop], [], [])
            except OSError:
                readable = [fd]
            if stop in readable:  # what the pipe holds now is all this process wrote
                stopping = True
                os.set_blocking(fd, False)
        try:
            data = os.read(fd, 65536)
        except OSError:  # BlockingIOError once stopping: the pipe is empty
            data = b""
        if not data:
            break
        pending += data
        end = pending.rfind(b"\n") + 1
        if end:
            prefix, owner = describe()
            send(stream, prefix_lines(prefix, pending[:end].decode("utf-8", "replace")), owner)
            pending = pending[end:]
    if pending:
        prefix, owner = describe()
        send(stream, prefix_lines(prefix, pending.decode("utf-8", "replace") + "\n"), owner)
    os.close(fd)


def driver_logging(logging_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The driver's root logging level and format, for its worker processes; with
    ``logging_config`` (``LoggingConfig.to_dict()``, already applied in the driver), that."""
    root = logging.getLogger()
    if logging_config is not None:
        return {"level": root.level, "format": None, "config": logging_config}
    config: dict[str, Any] = {"level": root.level, "format": None}
    consoles = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    # The console handler's format (``basicConfig``'s) before any other's: test runners
    # and libraries add handlers of their own.
    handlers = sorted(root.handlers, key=lambda h: getattr(h, "stream", None) not in consoles)
    for handler in handlers:
        formatter = handler.formatter or logging.Formatter()
        style = next(
            (key for key, (cls, _) in logging._STYLES.items() if type(formatter._style) is cls),
            "%",
        )
        config.update(format=formatter._fmt, datefmt=formatter.datefmt, style=style)
        break
    return config


_applied: list[logging.Handler] = []  # the handler apply_logging added, if any


def apply_logging(config: dict[str, Any]) -> None:
    """In a worker: the driver's root level, and a handler on ``sys.stderr`` in its format
    (or, after ``init(logging_config=)``, the config's TEXT or JSON lines at its level).

    With no handler in the driver, none here either: Python's last-resort handler prints
    warnings and errors, bare, as the driver's would. Applied again (a cluster worker
    going from one driver's work to another's), it replaces what it applied before.
    """
    root = logging.getLogger()
    while _applied:
        root.removeHandler(_applied.pop())
    try:
        root.setLevel(config["level"])
        if config.get("config") is not None:  # init(logging_config=): TEXT or JSON lines
            from actorlib.backends.log_format import handler as config_handler

            root.setLevel(config["config"]["log_level"])
            _applied.append(config_handler(config["config"]))
            root.addHandler(_applied[-1])
            return
    except (ValueError, TypeError) as exc:  # the worker's setup goes on without it
        sys.stderr.write(f"actorlib: the driver's logging could not be applied here: {exc}\n")
        return
    if config.get("format") is not None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            config["format"], config.get("datefmt"), style=config.get("style", "%"),
        ))
        root.addHandler(handler)
        _applied.append(handler)


def apply_driver_logging(logging_config: dict[str, Any]) -> None:
    """``init(logging_config=)`` in the driver: its handler on the root logger until
    :func:`remove_driver_logging` (at ``shutdown()``), which restores the root level."""
    changes = LoggerChanges(None)
    apply_logging({"level": logging.getLogger().level, "config": logging_config})
    changes.keep()


def remove_driver_logging() -> None:
    """Undo what ``init(logging_config=)`` did to this process's loggers, if anything."""
    while _undo:
        _undo.pop()()
    _applied.clear()  # taken off with the rest


_undo: list[Callable[[], None]] = []  # what puts loggers back at remove_driver_logging


class LoggerChanges:
    """What a call does to some loggers (another library's logging set-up, such as
    ``ray.init(logging_config=)``), to undo at ``shutdown()``: made before the call,
    :meth:`keep` after it; then the handlers the call added come off, those it removed go
    back, and levels and propagation are as they were. Handlers the program adds later
    are left alone."""

    def __init__(self, *names: str | None) -> None:
        self._before = [
            (lg, list(lg.handlers), lg.level, lg.propagate)
            for lg in map(logging.getLogger, names)
        ]
        self._changes: list[tuple[logging.Logger, list[logging.Handler],
                                  list[logging.Handler], int, bool]] = []

    def keep(self) -> None:
        """The call is done: undo its changes at ``shutdown()``."""
        for lg, handlers, level, propagate in self._before:
            added = [h for h in lg.handlers if h not in handlers]
            removed = [h for h in handlers if h not in lg.handlers]
            self._changes.append((lg, added, removed, level, propagate))
        _undo.append(self._undo)

    def _undo(self) -> None:
        for lg, added, removed, level, propagate in self._changes:
            for h in added:
                lg.removeHandler(h)
            for h in removed:
                if h not in lg.handlers:
                    lg.addHandler(h)
            lg.setLevel(level)
            lg.propagate = propagate


def run_setup_hook(hook: bytes | str) -> None:
    """``init(worker_process_setup_hook=)``: a pickled callable, or ``"module.function"``."""
    if isinstance(hook, str):
        module, _, name = hook.rpartition(".")
        fn = getattr(importlib.import_module(module), name)
    else:
        fn = pickle.loads(hook)
    fn()


# == in the driver =================================================================================


class _Stop:
    pass


_STOP = _Stop()


class OutputWriter:
    """Writes workers' output through the driver's current ``sys.stdout``/``sys.stderr``.

    On a thread of its own, started at the first output (a runtime whose workers print
    nothing starts none). Items are ``(stream, text, token)``; after writing a batch, the
    writer hands the batch's tokens to ``released`` (from its thread), so whatever waited
    behind that output can go on.
    """

    def __init__(self, released: Callable[[list[Any]], None]) -> None:
        self._released = released
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, stream: str | None, text: str, token: Any) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="actorlib-output", daemon=True
                    )
                    self._thread.start()
        self._queue.put((stream, text, token))

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop. A driver stream blocked for longer than
        ``timeout`` leaves the thread behind (a daemon thread: it dies with the process)."""
        with self._lock:
            thread = self._thread
            self._thread = None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    def _run(self) -> None:
        shield_signals()
        q = self._queue
        while True:
            batch = [q.get()]
            while len(batch) < 1000:
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            written: set[str] = set()
            tokens = []
            stop = False
            for item in batch:
                if item is _STOP:
                    stop = True
                    continue
                stream, text, token = item
                if text and stream is not None:
                    write_text(stream, text)
                    written.add(stream)
                if token is not None:
                    tokens.append(token)
            for stream in written:
                _flush(stream)
            if tokens:
                try:
                    self._released(tokens)
                except RuntimeError:  # the runtime's loop is gone
                    pass
            if stop:
                return


def _target(stream: str) -> TextIO | None:
    return sys.stdout if stream == STDOUT else sys.stderr


def write_text(stream: str, text: str) -> None:
    """Through the driver's stream of that name as it is now; lost if it is closed."""
    target = _target(stream)
    if target is None:
        return
    try:
        target.write(text)
    except (OSError, ValueError):  # closed, or not writable any more
        pass


def _flush(stream: str) -> None:
    target = _target(stream)
    if target is None:
        return
    try:
        target.flush()
    except (OSError, ValueError):
        pass


# == the thread backend ============================================================================


class PrefixingStream:
    """Stands for the driver's stdout or stderr while a thread-backend runtime runs.

    Writes from inside a task or actor are line-buffered per thread and prefixed (with
    ``log_to_driver=False`` they go to the process's original stream instead, unprefixed,
    or with ``init(log_dir=)`` to this process's worker log only, as in a worker process);
    every other write goes straight to the wrapped stream, at the cost of one context
    variable lookup. Anything else (``fileno``, ``encoding``, ...) is the wrapped stream's.
    """

    def __init__(
        self, target: TextIO, stream: str, to_driver: bool, log: RotatingLog | None = None,
    ) -> None:
        self._target = target
        self._stream = stream
        self._to_driver = to_driver
        self._log = log  # init(log_dir=): task lines are kept there too, prefixed
        self._pending: dict[int, str] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)

    def write(self, s: str) -> int:
        ctx = current_execution.get()
        if ctx is None:
            return self._target.write(s)
        if not self._to_driver and self._log is None:
            original = sys.__stdout__ if self._stream == STDOUT else sys.__stderr__
            return original.write(s) if original is not None else len(s)
        text = whole_lines(self._pending, s)
        if not text:
            return len(s)
        lines = prefix_lines(make_prefix(work_name(ctx), self._pid, None), text)
        if self._log is not None:
            self._log.write(lines)
        if not self._to_driver:  # kept in the log only, as a worker process does
            return len(s)
        with self._lock:  # whole lines: never interleaved with another thread's
            self._target.write(lines)
        return len(s)

    def flush(self) -> None:
        if current_execution.get() is not None and (self._to_driver or self._log is not None):
            text = self._pending.pop(get_ident(), "")
            if text:
                self.write(text + "\n")
        self._target.flush()

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)


_installed: list[tuple[str, PrefixingStream]] = []
_log: list[RotatingLog] = []  # the driver's own worker log (thread and sim backends)


def install_prefixing(to_driver: bool, log: RotatingLog | None = None) -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` (the thread backend's ``start``)."""
    for name in (STDOUT, STDERR):
        target = getattr(sys, name)
        if target is None or isinstance(target, PrefixingStream):
            continue
        proxy = PrefixingStream(target, name, to_driver, log)
        setattr(sys, name, proxy)
        _installed.append((name, proxy))


def remove_prefixing() -> None:
    """Put the wrapped streams back where the wrappers are still in place (``stop``)."""
    while _installed:
        name, proxy = _installed.pop()
        if getattr(sys, name) is proxy:
            setattr(sys, name, proxy._target)
    while _log:
        _log.pop().close()


def thread_backend_started(options: dict[str, Any]) -> None:
    """The thread backend's workers are this process: prefix their output, run the hook.

    ``worker_process_setup_hook`` runs once, here, before the first task.
    """
    log = worker_log(options.get("log_dir"))  # this process is the worker: its log
    if log is not None:
        _log.append(log)
    install_prefixing(bool(options.get("log_to_driver", True)), log)
    hook = (options.get("output") or {}).get("setup_hook")
    if hook is not None:
        try:
            run_setup_hook(hook)
        except BaseException:
            remove_prefixing()
            raise


def thread_backend_stopped() -> None:
    remove_prefixing()
