"""``runtime_env`` ``working_dir`` / ``py_modules`` on one node: extracted once per package.

Packages arrive as bytes inside the work's spec (a cluster node never reads the driver's
file system) and are extracted into a private directory of this node's backend, one
folder per content hash, so every worker of that environment shares one copy. The
directory goes when the backend stops (or, after a crash, with the node's other stale
session files). An extracted folder that has gone since (a cleaner of old temporary files)
is extracted again when a worker of its environment starts. A package that cannot be
extracted (damaged bytes, a full disk, its folder's name taken by a file) raises
:class:`~actorlib.exceptions.RuntimeEnvSetupError`, which fails the work that needed it
(Ray's error for an environment a node could not set up) and leaves nothing half-made.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile

from actorlib.core.specs import CodeEnv, Package
from actorlib.exceptions import RuntimeEnvSetupError


class CodeEnvDirs:
    """Where this node keeps extracted packages, and a worker's cwd and import paths."""

    def __init__(self) -> None:
        self._root: str | None = None
        self._done: set[str] = set()

    def _extract(self, package: Package) -> str:
        if package.hash in self._done:
            assert self._root is not None
            done = os.path.join(self._root, package.hash)
            # Checked at each worker start, not trusted: a cleaner of old temporary files
            # (systemd-tmpfiles, tmpreaper) or a user may have removed it since, and a
            # worker started in a missing folder cannot run anything.
            if os.path.isdir(done):
                return done
            self._done.discard(package.hash)
        import zipfile  # only with a runtime_env's files: not at every start
        import zlib

        partial = None
        try:
            if self._root is None:
                # Mode 0700; named as the store's files are, so that if this process is
                # killed, the next daemon's sweep of dead sessions removes it (remove_stale).
                self._root = tempfile.mkdtemp(prefix=f"actorlib-{os.getpid()}-env-")
            elif not os.path.isdir(self._root):  # a cleaner took the whole root: again
                os.makedirs(self._root, mode=0o700, exist_ok=True)
            target = os.path.join(self._root, package.hash)
            partial = tempfile.mkdtemp(dir=self._root, prefix=".partial-")
            with zipfile.ZipFile(io.BytesIO(package.blob)) as archive:
                archive.extractall(partial)  # names are made safe by zipfile
            os.replace(partial, target)
        # A damaged stream raises zlib.error; an unsupported compression
        # NotImplementedError; an encrypted entry RuntimeError.
        except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error,
                NotImplementedError, RuntimeError) as exc:
            if partial is not None:
                shutil.rmtree(partial, ignore_errors=True)
            raise RuntimeEnvSetupError(
                f"runtime_env: the package {package.hash[:12]} (a working_dir or py_modules "
                f"entry, {len(package.blob)} bytes) could not be extracted on this node: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._done.add(package.hash)
        return target

    def stamp(self, env: CodeEnv | None) -> tuple[int, ...]:
        """The identity (inode) of each of ``env``'s extracted folders now, 0 for one that
        is gone: a worker started in a folder since removed (and maybe extracted again at
        the same path) no longer has its files, and must not be handed work."""
        if env is None or self._root is None:
            return ()
        stamps = []
        for package in _packages(env):
            try:
                stamps.append(os.stat(os.path.join(self._root, package.hash)).st_ino)
            except OSError:
                stamps.append(0)
        return tuple(stamps)

    def worker_setup(self, env: CodeEnv | None) -> dict[str, object]:
        """What a worker of ``env`` needs at start: its ``cwd`` and ``code_paths`` (first
        on ``sys.path``: the working_dir, then each py_module's folder)."""
        if env is None:
            return {}
        paths = [self._extract(p) for p in _packages(env)]
        return {"cwd": paths[0] if env.working_dir else None, "code_paths": paths}

    def cleanup(self) -> None:
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
            self._done.clear()


def _packages(env: CodeEnv) -> list[Package]:
    """``env``'s packages: its working_dir first, then each py_module."""
    return ([env.working_dir] if env.working_dir else []) + list(env.py_modules)
