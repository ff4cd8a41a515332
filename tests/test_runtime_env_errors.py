"""A ``working_dir`` / ``py_modules`` package a node cannot extract fails the work that
needs it with Ray's ``RuntimeEnvSetupError``, naming the package and the cause; the
runtime goes on, and nothing half-extracted is left.

The damage is done where it could happen in life, to the package's bytes on their way
(a truncated or corrupted archive): the driver packs as usual, then ships bytes that are
not a zip archive. Only the backends that run work in worker processes extract packages
(the thread and sim backends refuse these fields, see test_runtime_env_files.py).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

import actorlib
from actorlib import exceptions as exc
from actorlib import runtime_env_files
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
    (tmp_path / "data.txt").write_text("payload")
    actorlib.init(backend=backend, num_cpus=2)
    try:
        _damaged_packing(monkeypatch)
        env = {"working_dir": str(tmp_path)}
        with pytest.raises(exc.RuntimeEnvSetupError, match="could not be extracted") as info:
            actorlib.get(where.options(runtime_env=env).remote(), timeout=T)
        assert "BadZipFile" in str(info.value)
        assert not isinstance(info.value, exc.InternalError)

        actor = Where.options(runtime_env=env).remote()
        with pytest.raises(exc.ActorError, match="could not be extracted"):
            actorlib.get(actor.cwd.remote(), timeout=T)

        # Everything else goes on: work without the package runs, on the same workers.
        monkeypatch.undo()
        assert actorlib.get(where.remote(), timeout=T)
        good = actorlib.get(where.options(runtime_env=env).remote(), timeout=T)
        assert (Path(good) / "data.txt").read_text() == "payload"
        # No half-extracted folder stays beside the good one.
        assert [n for n in os.listdir(os.path.dirname(good)) if n.startswith(".partial")] == []
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
            import shutil

            shutil.rmtree(dirs._root, ignore_errors=True)
