"""A ``working_dir`` / ``py_modules`` package a node cannot extract fails the work that
needs it with Ray's ``RuntimeEnvSetupError``, naming the package and the cause; the
runtime goes on, and nothing half-extracted is left.

The damage is done where it could happen in life: to the package's bytes on their way
(a truncated or corrupted archive: the driver packs as usual, then ships bytes that are
not a zip archive), to the node's extracted copy (removed, a file in its place), and to
the folder a worker enters (gone before it starts). Only the backends that run work in
worker processes extract packages (the thread, sim and ray backends refuse these fields,
see test_runtime_env_files.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import actorlib
from actorlib import exceptions as exc
from actorlib import runtime_env_files, session
from actorlib.core.specs import Package

T = 60


@actorlib.remote(max_retries=3)
def where() -> str:
    return os.getcwd()


@actorlib.remote
class Where:
    def cwd(self) -> str:
        return os.getcwd()


def _damaged_packing(monkeypatch: pytest.MonkeyPatch) -> None:
    real = runtime_env_files.pack

    def damaged(*args: object, **kwargs: object) -> Package:
        blob = real(*args, **kwargs).blob[:40]  # truncated: no longer a zip archive
        return Package(hashlib.sha256(blob).hexdigest(), blob)

    monkeypatch.setattr(runtime_env_files, "pack", damaged)


@pytest.mark.parametrize("backend", ["process", "cluster"])
def test_a_package_that_cannot_be_extracted_fails_its_work_with_runtime_env_setup_error(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    actorlib.init(backend=backend, num_cpus=2)
    try:
        _damaged_packing(monkeypatch)
        good = _fails_then_recovers(tmp_path, monkeypatch, "could not be extracted",
                                    "BadZipFile")
        _no_partial_folder(good)  # no half-extracted folder stays beside the good one
    finally:
        actorlib.shutdown()


def _fails_then_recovers(project: Path, monkeypatch: pytest.MonkeyPatch, match: str,
                         cause: str) -> str:
    """With the damage ``monkeypatch`` made, a task and an actor in ``project`` fail with
    the setup error (``match`` and ``cause`` in its message); once it is undone, work
    without and with the environment runs. The good copy's path."""
    (project / "data.txt").write_text("payload")
    env = {"working_dir": str(project)}
    with pytest.raises(exc.RuntimeEnvSetupError, match=match) as info:
        actorlib.get(where.options(runtime_env=env).remote(), timeout=T)
    assert cause in str(info.value)
    assert not isinstance(info.value, exc.InternalError)
    actor = Where.options(runtime_env=env).remote()
    with pytest.raises(exc.ActorRuntimeEnvSetupError, match=match) as died:
        actorlib.get(actor.cwd.remote(), timeout=T)
    assert cause in str(died.value)

    monkeypatch.undo()  # everything else goes on
    assert actorlib.get(where.remote(), timeout=T)
    good: str = actorlib.get(where.options(runtime_env=env).remote(), timeout=T)
    assert (Path(good) / "data.txt").read_text() == "payload"
    return good


def _no_partial_folder(extracted: str) -> None:
    assert [n for n in os.listdir(os.path.dirname(extracted)) if n.startswith(".partial")] == []


def test_a_package_folder_the_node_cannot_make_fails_the_work_then_heals(
    rt: Any, tmp_path: Path,
) -> None:
    """The node's copy of a package is damaged for real: its folder is removed and a file
    takes its name (as a cleaner of old temporary files, or a user, could do). The next
    worker of that environment needs it made again, which fails: the task raises
    ``RuntimeEnvSetupError`` and the actor's calls an error that is both
    ``ActorDiedError`` and ``RuntimeEnvSetupError`` (Ray raises the latter), each
    naming the package and the cause. Other work goes on, and once the file is gone the
    package is extracted again (before, the node handed out the missing folder and the
    worker broke at its start, its work never answered)."""
    (tmp_path / "data.txt").write_text("payload")
    env = {"working_dir": str(tmp_path)}
    if "working_dir" not in session.env_support()[0]:  # thread, sim, ray: documented
        with pytest.raises(exc.NotSupportedError, match="runtime_env 'working_dir'"):
            where.options(runtime_env=env).remote()
        return
    first = Where.options(runtime_env=env).remote()  # its worker is its own: it ends with it
    extracted = actorlib.get(first.cwd.remote(), timeout=T)
    actorlib.kill(first)
    package = os.path.basename(extracted)[:12]
    shutil.rmtree(extracted)
    Path(extracted).write_text("not a folder")

    with pytest.raises(exc.RuntimeEnvSetupError, match=package) as info:
        actorlib.get(where.options(runtime_env=env).remote(), timeout=T)
    assert "NotADirectoryError" in str(info.value)
    assert not isinstance(info.value, exc.InternalError)

    actor = Where.options(runtime_env=env).remote()
    with pytest.raises(exc.ActorDiedError, match=package) as died:
        actorlib.get(actor.cwd.remote(), timeout=T)
    assert isinstance(died.value, exc.RuntimeEnvSetupError)
    assert isinstance(died.value.cause, exc.RuntimeEnvSetupError)
    assert "NotADirectoryError" in str(died.value)
    with pytest.raises(exc.RuntimeEnvSetupError):  # every later call says so too
        actorlib.get(actor.cwd.remote(), timeout=T)

    assert actorlib.get(where.remote(), timeout=T) != extracted  # other work runs
    os.remove(extracted)
    again = actorlib.get(where.options(runtime_env=env).remote(), timeout=T)
    assert again == extracted
    assert (Path(again) / "data.txt").read_text() == "payload"
    _no_partial_folder(again)


@actorlib.remote(max_retries=0)
def read_data() -> tuple[int, str]:
    with open("data.txt") as f:
        return os.getpid(), f.read()


def test_an_idle_worker_whose_folder_was_removed_is_not_reused(
    rt: Any, tmp_path: Path,
) -> None:
    """A warm worker of an environment whose extracted folder was removed since (a
    cleaner, a user) runs nothing more: the next task of it gets a new worker, in the
    package extracted again (before, the idle worker, whose working directory was gone,
    was handed every later task, each failing with the program's own FileNotFoundError)."""
    (tmp_path / "data.txt").write_text("payload")
    env = {"working_dir": str(tmp_path)}
    if "working_dir" not in session.env_support()[0]:  # thread, sim, ray: documented
        return
    task = read_data.options(runtime_env=env)
    first_pid, text = actorlib.get(task.remote(), timeout=T)
    assert text == "payload"
    extracted = actorlib.get(where.options(runtime_env=env).remote(), timeout=T)
    shutil.rmtree(extracted)
    for _ in range(2):
        pid, text = actorlib.get(task.remote(), timeout=T)
        assert text == "payload" and pid != first_pid
    assert os.path.isdir(extracted)


def test_a_worker_that_cannot_enter_its_working_dir_fails_its_work_and_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The folder goes between the node's check and the worker's start (a race too narrow
    to hit on purpose, so the node is made to name a folder that is not there): the
    worker's ``chdir`` fails for real, the work it was started for fails with
    ``RuntimeEnvSetupError`` naming the package and the cause, and the worker exits
    instead of staying broken (before, each task sent to it got no answer)."""
    from actorlib.backends.process.code_envs import CodeEnvDirs

    real = CodeEnvDirs.worker_setup
    gone = tmp_path / "gone" / ("ab" * 32)

    def missing_cwd(self: CodeEnvDirs, code_env: Any) -> dict[str, object]:
        setup = real(self, code_env)
        if setup:
            setup["cwd"] = str(gone)
        return setup

    actorlib.init(backend="process", num_cpus=2)
    try:
        monkeypatch.setattr(CodeEnvDirs, "worker_setup", missing_cwd)
        # Afterwards the work of that environment runs: the failed worker was not reused.
        _fails_then_recovers(tmp_path, monkeypatch, "package abababababab .*could not be entered",
                             "FileNotFoundError")
    finally:
        actorlib.shutdown()


@pytest.mark.parametrize("damage", ["truncated", "corrupted stream"])
def test_a_damaged_package_is_a_setup_error_and_leaves_no_folder(damage: str) -> None:
    """Whatever zipfile raises for a damaged archive (``BadZipFile`` for a truncated one,
    ``zlib.error`` for a corrupted compressed stream) is the package's setup error."""
    import io
    import zipfile

    from actorlib.backends.process.code_envs import CodeEnvDirs

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mod.py", "x = 1\n" * 2000)
    blob = bytearray(buf.getvalue())
    if damage == "truncated":
        blob = blob[:40]
    else:
        for i in range(40, 60):  # inside the compressed data, after the local header
            blob[i] ^= 0xFF
    dirs = CodeEnvDirs()
    package = Package(hashlib.sha256(blob).hexdigest(), bytes(blob))
    try:
        with pytest.raises(exc.RuntimeEnvSetupError, match="could not be extracted"):
            dirs._extract(package)
        assert dirs._root is not None and os.listdir(dirs._root) == []
    finally:
        if dirs._root is not None:
            shutil.rmtree(dirs._root, ignore_errors=True)
