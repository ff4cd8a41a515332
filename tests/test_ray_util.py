"""``ray.util``'s helpers on every backend: ``as_completed``, ``map_unordered``,
``register_serializer``, and the ``ray.util.actor_pool`` module path."""

from __future__ import annotations

import contextlib
import glob
import io
import os
import re
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from testkit import Gate, T

import actorlib
import actorlib as ray
from actorlib.exceptions import GetTimeoutError, SerializationError, TaskError

pytestmark = pytest.mark.shared_runtime


@actorlib.remote
def square(x: int) -> int:
    return x * x


@actorlib.remote
def gated(gate: Any, x: int) -> int:
    actorlib.get(gate.wait.remote(), timeout=T)
    return x


@actorlib.remote
def fails(x: int) -> int:
    raise ValueError(f"bad item {x}")


def test_the_module_paths_ray_code_imports() -> None:
    from actorlib.util import (
        as_completed,
        deregister_serializer,
        map_unordered,
        register_serializer,
    )
    from actorlib.util.actor_pool import ActorPool

    assert ActorPool is ray.util.ActorPool
    assert callable(as_completed) and callable(map_unordered)
    assert callable(register_serializer) and callable(deregister_serializer)


# -- as_completed -------------------------------------------------------------------------


def test_as_completed_yields_what_is_ready_without_waiting_for_the_rest(rt: Any) -> None:
    gate = Gate.remote()
    slow = gated.remote(gate, -1)
    refs = [slow] + [square.remote(i) for i in range(5)]
    results = ray.util.as_completed(refs, chunk_size=1)
    early = [next(results) for _ in range(5)]  # the gated task still runs
    assert sorted(early) == [0, 1, 4, 9, 16]
    actorlib.get(gate.open.remote(), timeout=T)
    assert list(results) == [-1]


def test_as_completed_gives_refs_when_asked(rt: Any) -> None:
    refs = [square.remote(i) for i in range(7)]
    got = list(ray.util.as_completed(refs, chunk_size=3, yield_obj_refs=True))
    assert sorted(got, key=refs.index) == refs
    assert sorted(actorlib.get(got, timeout=T)) == [i * i for i in range(7)]


def test_as_completed_raises_a_failed_tasks_error(rt: Any) -> None:
    refs = [square.remote(1), fails.remote(2)]
    with pytest.raises(TaskError, match="bad item 2"):
        list(ray.util.as_completed(refs, chunk_size=2))


def test_as_completed_with_a_timeout_that_passes_raises(rt: Any) -> None:
    gate = Gate.remote()
    ref = gated.remote(gate, 1)
    with pytest.raises(GetTimeoutError, match="none of 1 pending results was ready"):
        list(ray.util.as_completed([ref], timeout=0.2))
    actorlib.get(gate.open.remote(), timeout=T)
    assert list(ray.util.as_completed([ref], timeout=T)) == [1]


# -- map_unordered ------------------------------------------------------------------------


def test_map_unordered_bounds_the_tasks_in_flight(rt: Any) -> None:
    drawn = []

    def items() -> Iterator[int]:
        for i in range(20):
            drawn.append(i)
            yield i

    results = ray.util.map_unordered(square, items(), backpressure_size=3, chunk_size=1)
    first = next(results)
    assert len(drawn) == 3, "more items were submitted than backpressure_size allows"
    assert sorted([first, *results]) == [i * i for i in range(20)]


def test_map_unordered_without_a_bound_and_empty(rt: Any) -> None:
    assert sorted(ray.util.map_unordered(square, range(12), backpressure_size=None)) == [
        i * i for i in range(12)]
    assert list(ray.util.map_unordered(square, [])) == []


def test_bad_arguments_are_refused_before_any_task() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        list(ray.util.as_completed([], chunk_size=0))
    with pytest.raises(ValueError, match="num_returns"):
        list(ray.util.as_completed([], num_returns=2))
    with pytest.raises(TypeError, match="unexpected keyword"):
        list(ray.util.as_completed([], timout=1))
    with pytest.raises(ValueError, match="backpressure_size"):
        list(ray.util.map_unordered(square, [1], backpressure_size=0))
    with pytest.raises(TypeError, match="remote function"):
        list(ray.util.map_unordered(lambda x: x, [1]))


# -- register_serializer ------------------------------------------------------------------


class Account:
    """Holds a lock: does not pickle on its own."""

    def __init__(self, owner: str, balance: int) -> None:
        self.owner = owner
        self.balance = balance
        self.lock = threading.Lock()


def account_state(account: Account) -> tuple[str, int]:
    return account.owner, account.balance


def rebuild_account(state: tuple[str, int]) -> Account:
    return Account(*state)


@actorlib.remote
def describe(account: Account) -> str:
    return f"{account.owner}: {account.balance} ({type(account.lock).__name__})"


@actorlib.remote
def open_account(owner: str) -> Account:
    # As in Ray, each process that sends such values registers (here: the worker, for
    # its result; it stays registered there).
    ray.util.register_serializer(Account, serializer=account_state,
                                 deserializer=rebuild_account)
    return Account(owner, 7)


def test_a_registered_serializer_carries_an_unpicklable_class(rt: Any) -> None:
    with pytest.raises(SerializationError):
        describe.remote(Account("ada", 5))
    ray.util.register_serializer(Account, serializer=account_state,
                                 deserializer=rebuild_account)
    try:
        assert actorlib.get(describe.remote(Account("ada", 5)), timeout=T) == "ada: 5 (lock)"
        back = actorlib.get(actorlib.put(Account("bob", 3)), timeout=T)
        assert (back.owner, back.balance) == ("bob", 3)
    finally:
        ray.util.deregister_serializer(Account)
    with pytest.raises(SerializationError):
        describe.remote(Account("ada", 5))
    ray.util.deregister_serializer(Account)  # twice: nothing happens


def test_a_worker_registers_for_what_it_returns(rt: Any) -> None:
    try:
        account = actorlib.get(open_account.remote("cy"), timeout=T)
    finally:
        ray.util.deregister_serializer(Account)  # one process on thread and sim
    assert (account.owner, account.balance, type(account.lock)) == (
        "cy", 7, type(threading.Lock()))


def test_register_serializer_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValueError, match="built-in int"):
        ray.util.register_serializer(int, serializer=str, deserializer=int)
    with pytest.raises(TypeError, match="takes a class"):
        ray.util.register_serializer("Account", serializer=str, deserializer=str)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        ray.util.register_serializer(Account, serializer=None,  # type: ignore[arg-type]
                                     deserializer=rebuild_account)


def test_rays_other_libraries_say_that_they_need_ray() -> None:
    with pytest.raises(AttributeError, match=r"not Ray Data; code that uses it needs Ray"):
        _ = ray.data
    with pytest.raises(AttributeError, match=r"not Dask on Ray \(ray.util.dask\)"):
        _ = ray.util.dask
    assert not hasattr(ray, "serve") and getattr(ray.util, "collective", None) is None
    with pytest.raises(AttributeError, match=r"^module 'actorlib' has no attribute 'nope'$"):
        _ = ray.nope
    with pytest.raises(AttributeError, match=r"^module 'actorlib.util' has no attribute 'x'$"):
        _ = ray.util.x


def test_util_submodules_load_on_first_use() -> None:
    """``ray.util.queue.Queue`` after a bare import (checked in a fresh interpreter, where
    nothing has imported the submodules yet)."""
    import subprocess
    import sys

    code = ("import sys, actorlib as ray\n"
            "assert 'actorlib.util.queue' not in sys.modules\n"
            "assert 'actorlib.util.rpdb' not in sys.modules and 'pdb' not in sys.modules\n"
            "print(ray.util.queue.Queue.__name__, ray.util.multiprocessing.Pool.__name__,"
            " ray.util.actor_pool.ActorPool.__name__, ray.util.pdb.__name__,"
            " ray.util.pdb is ray.util.rpdb)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["Queue", "Pool", "ActorPool", "actorlib.util.rpdb", "True"]


# -- log_once, get_node_instance_id, pdb ---------------------------------------------------


@pytest.fixture
def fresh_log_once(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``actorlib.util.debug`` with its process-wide switches restored after the test."""
    from actorlib.util import debug

    monkeypatch.setattr(debug, "_logged", set())
    monkeypatch.setattr(debug, "_disabled", False)
    monkeypatch.setattr(debug, "_periodic", False)
    return debug


def test_log_once_says_each_key_once(fresh_log_once: Any) -> None:
    assert ray.util.log_once("a") is True
    assert ray.util.log_once("a") is False and ray.util.log_once("b") is True
    fresh_log_once.reset_log_once("a")
    assert ray.util.log_once("a") is True and ray.util.log_once("b") is False
    fresh_log_once.reset_log_once()
    assert ray.util.log_once("b") is True


def test_log_once_periodic_and_disabled(fresh_log_once: Any, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    now = [1000.0]
    monkeypatch.setattr(fresh_log_once.time, "monotonic", lambda: now[0])
    ray.util.enable_periodic_logging()
    assert ray.util.log_once("k") is True and ray.util.log_once("k") is False
    now[0] += fresh_log_once.PERIOD_S + 1
    assert ray.util.log_once("k") is True and ray.util.log_once("k") is False
    ray.util.disable_log_once_globally()
    assert ray.util.log_once("never-seen") is False


def test_log_once_is_true_once_among_threads(fresh_log_once: Any) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def ask() -> None:
        barrier.wait()
        results.extend(ray.util.log_once("shared") for _ in range(100))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T)
    assert results.count(True) == 1 and len(results) == 800


@actorlib.remote
def says_once(key: str) -> list[bool]:
    return [ray.util.log_once(key) for _ in range(3)]


def test_log_once_in_a_task(rt: Any) -> None:
    key = f"task-key-{time.time_ns()}"
    assert actorlib.get(says_once.remote(key), timeout=T) == [True, False, False]


@actorlib.remote
def instance_id() -> str:
    return ray.util.get_node_instance_id()


def test_get_node_instance_id_is_the_nodes_cloud_instance(rt: Any) -> None:
    """Ray's variable, as the worker's environment has it; "" where none is set."""
    env = {"env_vars": {"RAY_CLOUD_INSTANCE_ID": "i-0abc"}}
    assert actorlib.get(instance_id.options(runtime_env=env).remote(), timeout=T) == "i-0abc"
    assert actorlib.get(instance_id.remote(), timeout=T) == ""
    assert ray.util.get_node_instance_id() == ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@actorlib.remote
def stops_in_the_debugger(x: int) -> int:
    secret = x * 7
    ray.util.pdb.set_trace()
    return secret + 1


def test_pdb_set_trace_debugs_the_task(rt: Any, backend_name: str,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Where the task runs in the driver's process (thread, sim), ``pdb`` on its stdin;
    in a worker process, a debugger on a socket, as the module says. The session reads
    the task's locals and changes one; ``continue`` lets the task finish."""
    commands = "p secret\nsecret = 100\nc\n"
    if backend_name in ("thread", "sim"):
        monkeypatch.setattr(sys, "stdin", io.StringIO(commands))
        assert actorlib.get(stops_in_the_debugger.remote(6), timeout=T) == 101
        assert "(Pdb) 42\n" in capsys.readouterr().out
        return
    port = free_port()
    env = {"env_vars": {"ACTORLIB_PDB_PORT": str(port)}}
    ref = stops_in_the_debugger.options(runtime_env=env).remote(6)
    deadline = time.monotonic() + T
    while True:
        try:
            connection = socket.create_connection(("127.0.0.1", port), timeout=T)
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "the debugger never listened"
            time.sleep(0.02)
    with connection:
        connection.sendall(commands.encode())
        received = b""
        while chunk := connection.recv(4096):  # the debugger hangs up on ``continue``
            received += chunk
    assert actorlib.get(ref, timeout=T) == 101
    lines = received.decode().splitlines()
    assert lines[0].endswith("stops_in_the_debugger()") and lines[1] == "-> return secret + 1"
    assert lines[2] == "(Pdb) 42"


@actorlib.remote(max_retries=0)
def waits_in_the_debugger(marker: str) -> int:
    open(marker, "w").close()
    ray.util.pdb.set_trace()
    return 1


def _breakpoint_sockets(root: str) -> list[str]:
    return sorted(glob.glob(os.path.join(root, "pdb-*.sock")))


def test_pdb_in_a_worker_listens_on_a_socket_only_its_user_reaches(
    tmp_path: Any, _leak_check: None
) -> None:
    """By default a worker's debugger is a Unix socket in actorlib's private directory
    (mode 0700: another user cannot even reach it; TCP on loopback would let any local
    user connect first and run code as the worker). A ``cancel()`` (not forced) ends a
    task that waits for a client there, as Ray's does; the socket is removed."""
    actorlib.init(backend="process", num_cpus=1)
    try:
        root = actorlib.get_runtime_context().get_temp_dir()
        assert os.stat(root).st_mode & 0o777 == 0o700
        before = _breakpoint_sockets(root)
        ref = stops_in_the_debugger.remote(6)
        deadline = time.monotonic() + T
        while not (new := sorted(set(_breakpoint_sockets(root)) - set(before))):
            assert time.monotonic() < deadline, "the debugger never listened"
            time.sleep(0.02)
        path = new[0]
        if os.geteuid() == 0:  # another user cannot reach it (root can; the peer check holds)
            stranger = subprocess.run(
                [sys.executable, "-c", textwrap.dedent(f"""
                    import os, socket
                    os.setgid(65534); os.setuid(65534)
                    s = socket.socket(socket.AF_UNIX)
                    try:
                        s.connect({path!r})
                    except PermissionError:
                        print("refused")
                    """)], capture_output=True, text=True, timeout=T)
            assert stranger.stdout.strip() == "refused", stranger.stderr
        with socket.socket(socket.AF_UNIX) as connection:
            connection.connect(path)
            connection.sendall(b"p secret\nc\n")
            received = b""
            while chunk := connection.recv(4096):
                received += chunk
        assert actorlib.get(ref, timeout=T) == 43
        assert "(Pdb) 42" in received.decode()
        assert not os.path.exists(path)
        # Nobody connects: a plain cancel ends the wait.
        marker = str(tmp_path / "started")
        ref = waits_in_the_debugger.remote(marker)
        while not os.path.exists(marker) or not (
                set(_breakpoint_sockets(root)) - set(before)):
            assert time.monotonic() < deadline + T, "the second breakpoint never listened"
            time.sleep(0.02)
        actorlib.cancel(ref)
        with pytest.raises(actorlib.exceptions.TaskCancelledError):
            actorlib.get(ref, timeout=T)
        wait_gone = time.monotonic() + T
        while set(_breakpoint_sockets(root)) - set(before):
            assert time.monotonic() < wait_gone, "the breakpoint's socket was left behind"
            time.sleep(0.02)
    finally:
        actorlib.shutdown()


def _connect(port: int) -> socket.socket:
    """A connection to the debugger on ``port`` once it listens."""
    deadline = time.monotonic() + T
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=T)
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, f"no debugger listened on port {port}"
            time.sleep(0.02)


def _read_until(connection: socket.socket, text: bytes) -> bytes:
    received = b""
    while text not in received:
        chunk = connection.recv(4096)
        assert chunk, f"the debugger hung up before {text!r}: {received!r}"
        received += chunk
    return received


def _free_ports(n: int) -> int:
    """The first of ``n`` consecutive free ports on loopback."""
    while True:
        first = free_port()
        try:
            with contextlib.ExitStack() as stack:
                for port in range(first + 1, first + n):
                    s = stack.enter_context(socket.socket())
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue


@pytest.mark.parametrize("backend", ["process", "cluster"])
def test_pdb_client_that_hangs_up_lets_the_task_go_on(backend: str, _leak_check: None
                                                      ) -> None:
    """A client that closes its end (its input ends) or whose connection resets, before
    any ``continue``: the task goes on as after ``continue`` and returns its value,
    instead of ending with ``BdbQuit`` or a connection error (as Ray's would)."""
    actorlib.init(backend=backend, num_cpus=2)
    try:
        for reset in (False, True):
            port = free_port()
            env = {"env_vars": {"ACTORLIB_PDB_PORT": str(port)}}
            ref = stops_in_the_debugger.options(runtime_env=env).remote(6)
            connection = _connect(port)
            connection.sendall(b"p secret\n")
            assert b"(Pdb) 42" in _read_until(connection, b"(Pdb) 42")
            if reset:  # a reset (RST), not an orderly close
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                      struct.pack("ii", 1, 0))
            connection.close()
            assert actorlib.get(ref, timeout=T) == 43
    finally:
        actorlib.shutdown()


def test_pdb_client_gone_before_the_prompt_lets_go_of_the_tasks_frames() -> None:
    """The client's connection is gone when the debugger first writes (a broken pipe):
    the task goes on, and the debugger forgets the stack it set up for the stop, as
    ``pdb`` does after every stop. Kept, it held the task's frames, so their locals."""
    import weakref

    from actorlib.util.rpdb import SocketPdb

    class Payload:
        pass

    ours, theirs = socket.socketpair()
    theirs.close()
    debugger = SocketPdb(ours)
    seen: list[Any] = []

    def task() -> None:
        payload = Payload()
        seen.append(weakref.ref(payload))
        debugger.set_trace(sys._getframe())
        seen.append("went on")

    thread = threading.Thread(target=task)  # its own trace function, not this thread's
    thread.start()
    thread.join(T)
    assert seen[1:] == ["went on"]
    assert debugger.stack == [] and debugger.curframe is None
    assert seen[0]() is None, "the debugger kept the task's locals alive"


@pytest.mark.parametrize("backend", ["process", "cluster"])
def test_pdb_breakpoints_open_at_once_on_a_fixed_port_take_the_next(
        backend: str, _leak_check: None, capfd: pytest.CaptureFixture[str]) -> None:
    """With ``ACTORLIB_PDB_PORT`` set, a second breakpoint open at the same time takes
    the next free port (Ray's fails its task with EADDRINUSE) and says so; both debug as
    usual."""
    actorlib.init(backend=backend, num_cpus=2)
    try:
        port = _free_ports(2)
        env = {"env_vars": {"ACTORLIB_PDB_PORT": str(port)}}
        refs = [stops_in_the_debugger.options(runtime_env=env).remote(x) for x in (6, 7)]
        said = ""
        deadline = time.monotonic() + T
        while len(announced := re.findall(r"connect with `nc 127\.0\.0\.1 (\d+)`", said)) < 2:
            assert time.monotonic() < deadline, f"two breakpoints never listened: {said!r}"
            time.sleep(0.05)
            said += capfd.readouterr().err
        assert sorted(map(int, announced)) == [port, port + 1]  # both listen at once
        seen = []
        for listening in (port, port + 1):
            with _connect(listening) as connection:
                connection.sendall(b"p secret\nc\n")
                received = b""
                while chunk := connection.recv(4096):
                    received += chunk
                seen.append(received.decode())
        assert actorlib.get(refs, timeout=T) == [43, 50]
        assert sorted("(Pdb) 42" in text for text in seen) == [False, True]
        assert sorted("(Pdb) 49" in text for text in seen) == [False, True]
    finally:
        actorlib.shutdown()


def test_pdb_port_range_all_taken_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every port of the range taken: an error naming the setting and the ports."""
    from actorlib.util import rpdb

    monkeypatch.setattr(rpdb, "PORT_TRIES", 2)
    first = _free_ports(2)
    with socket.create_server(("127.0.0.1", first)), socket.create_server(
            ("127.0.0.1", first + 1)), pytest.raises(
            OSError, match=rf"ACTORLIB_PDB_PORT={first}: ports {first} to {first + 1} .* "
                           r"all in use"):
        rpdb.tcp_listener("127.0.0.1", first)
