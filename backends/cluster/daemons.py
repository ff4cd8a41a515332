"""Starting and stopping the cluster's daemons (a head, nodes) as processes of this machine.

``actorlib start`` starts them detached; a driver's private cluster (:class:`PrivateCluster`)
starts a head and one node that follow the driver (they stop when it dies, however it
dies) and are removed at its ``shutdown()``. The daemons call
:func:`handle_daemon_signals` to stop cleanly on a signal or when their driver is gone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from actorlib.backends.base import BackendConfig
from actorlib.backends.proc_title import set_title
from actorlib.backends.process import portable, shm_store
from actorlib.backends.transport.tokens import new_token, write_token_file
from actorlib.core.interruptible import unshield_signals
from actorlib.core.loop import fill_standard_fds


def daemon_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-c",
            "import sys; sys.path[:] = [p for p in sys.path if p not in ('', '.')]; "
            f"from actorlib.backends.{module} import main; main()", *args]


def add_driver_args(parser: argparse.ArgumentParser) -> None:
    """A daemon's options naming the driver a private cluster follows (:func:`driver_watch`)."""
    parser.add_argument("--driver-pid", type=int, help="a private cluster's driver")
    parser.add_argument("--driver-fd", type=int, help="its lifeline (without pidfds)")


def begin_daemon(title: str) -> None:
    """A daemon's first steps: standard fds, its process title, logging to its log file,
    and the terminating signals unblocked (started from one of a driver's threads, it
    inherited that thread's mask: ``interruptible.shield_signals``)."""
    unshield_signals()
    fill_standard_fds()  # before any socket: a closed stderr must not become one
    set_title(title)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def handle_daemon_signals(
    stop: Callable[[], None], driver_pid: int | None, driver_fd: int | None = None
) -> None:
    """SIGTERM and SIGINT stop a daemon cleanly; a private cluster's follow its driver.

    A private cluster (``driver_pid`` given) shares its driver's terminal: Ctrl-C and a
    hang-up reach it too, but the driver decides (it stops the cluster in ``shutdown``,
    or carries on if it catches the KeyboardInterrupt). The daemon stops when the driver
    dies however it dies (SIGKILL included), watched through a pidfd, or where there is
    none through the driver's lifeline pipe ``driver_fd`` (see :func:`driver_watch`).
    Ignored signals stay ignored in the workers a node starts.
    """
    signal.signal(signal.SIGTERM, lambda *_: stop())
    if driver_pid is None:
        signal.signal(signal.SIGINT, lambda *_: stop())
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        pidfd = portable.pidfd_open(driver_pid)
    except ProcessLookupError:
        stop()
        return
    if pidfd is None:
        if driver_fd is None:
            raise RuntimeError(
                f"cannot watch driver {driver_pid} here (no pidfd): pass --driver-fd"
            )
        portable.on_lifeline_cut(driver_fd, stop, "actorlib-driver-watch")
        return
    if driver_fd is not None:
        os.close(driver_fd)  # the pidfd is enough
    fd = pidfd

    def watch() -> None:
        select.select([fd], [], [])  # readable once the driver has exited
        os.close(fd)
        stop()

    threading.Thread(target=watch, name="actorlib-driver-watch", daemon=True).start()


def wait_for_stop(stop: threading.Event) -> None:
    """Block the daemon's main thread until ``stop`` is set, running signal handlers at once.

    The kernel may hand a SIGTERM to any thread of the process. Python runs the handler
    on the main thread, but only when that thread next runs bytecode: asleep in
    ``Event.wait()`` it never did, and the daemon lingered until its driver killed it.
    So the main thread sleeps in ``select`` on a socket that the signal's wakeup fd
    (written by whichever thread the signal lands on) and ``stop`` itself both wake.
    """
    wake, waker = socket.socketpair()
    wake.setblocking(False)
    waker.setblocking(False)
    previous = signal.set_wakeup_fd(waker.fileno(), warn_on_full_buffer=False)

    def relay() -> None:  # ``stop`` set by another thread (driver gone, head lost)
        stop.wait()
        try:
            waker.send(b"\0")
        except OSError:
            pass  # full: the main thread is being woken anyway

    relaying = threading.Thread(target=relay, name="actorlib-stop-relay", daemon=True)
    relaying.start()
    try:
        while not stop.is_set():
            select.select([wake], [], [])
            try:
                while wake.recv(256):
                    pass
            except BlockingIOError:
                pass
    finally:
        signal.set_wakeup_fd(previous)
        stop.set()
        relaying.join()  # before its socket closes: its number may be reused at once
        wake.close()
        waker.close()


def driver_watch(driver_pid: int | None) -> tuple[list[str], list[int]]:
    """A private daemon's arguments and inherited fds to follow its driver (this process).

    The driver's lifeline goes along always: the daemon uses it only without pidfds.
    """
    if driver_pid is None:
        return [], []
    fd = portable.lifeline_fd()
    return ["--driver-pid", str(driver_pid), "--driver-fd", str(fd)], [fd]


def write_ready_file(path: str, info: dict[str, Any]) -> None:
    """Whole or not at all: whoever waits for it (:func:`wait_for_file`) reads it at once."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)


def wait_for_file(path: str, proc: subprocess.Popen[bytes], what: str, log: str,
                  timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as f:
                data: dict[str, Any] = json.load(f)
            return data
        if proc.poll() is not None:
            raise RuntimeError(f"the {what} exited with code {proc.returncode}; see {log}")
        time.sleep(0.02)
    raise TimeoutError(f"the {what} did not start within {timeout:g} s; see {log}")


def start_head(session_dir: str, token_file: str, host: str = "127.0.0.1", port: int = 0,
               *, detach: bool = False, wait: bool = True, driver_pid: int | None = None,
               dashboard: tuple[str, int] | None = None,
               ) -> tuple[subprocess.Popen[bytes], str]:
    """Start a head daemon; returns it and its ``host:port``.

    ``wait=False`` returns at once (``port`` must then be given): nodes started meanwhile
    keep trying to connect until the head listens. ``driver_pid``: a private cluster's
    head, which stops with that driver (see :func:`handle_daemon_signals`).
    ``dashboard``: ``(host, port)`` to serve the web dashboard on; its URL is then in the
    session's ``head.json``.
    """
    ready = os.path.join(session_dir, "head.json")
    log = os.path.join(session_dir, "logs", "head.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    extra, fds = driver_watch(driver_pid)
    if dashboard is not None:
        extra += ["--dashboard-host", dashboard[0], "--dashboard-port", str(dashboard[1])]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            daemon_command("cluster.head_daemon", "--host", host, "--port", str(port),
                           "--token-file", token_file, "--ready-file", ready, *extra),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=detach, pass_fds=fds,
        )
    if not wait:
        return proc, f"{host}:{port}"
    info = wait_for_file(ready, proc, "head", log)
    return proc, f"{info['host']}:{info['port']}"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def start_node(session_dir: str, token_file: str, address: str, *, name: str = "node",
               num_cpus: float | None = None, num_gpus: float | None = None,
               resources: dict[str, float] | None = None,
               object_store_memory: int | None = None, host: str = "127.0.0.1",
               labels: dict[str, str] | None = None, spill_root: str | None = None,
               node_id: str | None = None, detach: bool = False,
               driver_pid: int | None = None) -> subprocess.Popen[bytes]:
    """Start a node daemon. It writes ``{name}.json`` in ``session_dir`` once the head
    lists it as joined (wait with :func:`wait_for_file`)."""
    log = os.path.join(session_dir, "logs", f"{name}.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    extra, fds = driver_watch(driver_pid)
    args = ["--address", address, "--token-file", token_file, "--host", host,
            "--log-dir", os.path.dirname(log),
            "--ready-file", os.path.join(session_dir, f"{name}.json"), *extra]
    if num_cpus is not None:
        args += ["--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        args += ["--num-gpus", str(num_gpus)]
    if resources:
        args += ["--resources", json.dumps(resources)]
    if object_store_memory is not None:
        args += ["--object-store-memory", str(object_store_memory)]
    if spill_root is not None:
        args += ["--object-spilling-directory", spill_root]
    if labels:
        args += ["--labels", ",".join(f"{k}={v}" for k, v in labels.items())]
    if node_id is not None:
        args += ["--node-id", node_id]
    with open(log, "ab") as out:
        return subprocess.Popen(
            daemon_command("cluster.node", *args), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=detach, pass_fds=fds,
        )


def stop_processes(procs: list[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """SIGTERM every daemon at once (each takes a moment to wind down), then wait."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    # A daemon killed earlier (or its workers) cannot have removed its segments.
    shm_store.remove_dead_sessions()


class PrivateCluster:
    """A head and one node for this driver alone, removed at shutdown."""

    def __init__(self, config: BackendConfig) -> None:
        self.dir = tempfile.mkdtemp(prefix="actorlib-cluster-")
        self.token_file = os.path.join(self.dir, "token")
        write_token_file(self.token_file, new_token())
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            # Head and node start side by side; the node retries until the head listens.
            head, self.address = start_head(self.dir, self.token_file, port=free_port(),
                                            wait=False, driver_pid=os.getpid())
            self.procs.append(head)
            self.procs.append(start_node(
                self.dir, self.token_file, self.address, num_cpus=config.num_cpus,
                num_gpus=config.num_gpus, resources=config.resources,
                object_store_memory=config.object_store_memory, driver_pid=os.getpid(),
                labels=config.labels, spill_root=config.options.get("spill_root"),
            ))
            wait_for_file(os.path.join(self.dir, "head.json"), head, "head",
                          os.path.join(self.dir, "logs", "head.log"))
            wait_for_file(os.path.join(self.dir, "node.json"), self.procs[1], "node",
                          os.path.join(self.dir, "logs", "node.log"))
        except BaseException:
            self.stop()
            raise

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            with open(os.path.join(self.dir, "logs", f"{name}.log")) as f:
                tail = f.read().splitlines()[-lines:]
        except OSError as exc:
            return f"(no {name} log: {exc})"
        return f"last lines of the {name}'s log:\n" + "\n".join(tail)

    def stop(self) -> None:
        stop_processes(self.procs)
        shutil.rmtree(self.dir, ignore_errors=True)
