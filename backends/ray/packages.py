"""runtime_env ``working_dir`` / ``py_modules`` on Ray: actorlib's packages in Ray's store.

actorlib packs both fields on the caller's side as on every backend (its excludes, a
content hash over names and bytes, :mod:`actorlib.runtime_env_files`). On Ray each
package becomes a ``gcs://`` zip in the package store Ray's own uploads use, and the
task's or actor's Ray ``runtime_env`` names those URIs; Ray's nodes fetch and extract
them, and Ray sets the cwd and ``sys.path`` of the workers it starts for them (a Ray
child task inherits its parent's). Ray itself takes local paths only in a job's
``runtime_env`` (``ray.init``); and its own upload of a ``py_modules`` directory hashes
the files but not the directory's name, so two modules with the same files would share
one package under the first one's name.

Ray keeps a package that no running work references for a while after it was pinned
(``RAY_RUNTIME_ENV_TEMPORARY_REFERENCE_EXPIRATION_S``, 10 minutes by default), then
deletes it: each submission that names one re-pins it (and puts it back if it is gone)
once ``_REPIN_S`` has passed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from actorlib.core.specs import CodeEnv, Package

#: How often a package named by submissions is pinned again (well within Ray's expiry).
_REPIN_S = 60.0


def uri(package: Package) -> str:
    """The package's Ray URI (a zip: Ray extracts it as it is)."""
    return f"gcs://_actorlib_pkg_{package.hash}.zip"


class RayPackages:
    """The packages this process put in Ray's store, and when each was last pinned."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pinned: dict[str, float] = {}  # hash -> when

    def runtime_env(self, code_env: CodeEnv) -> dict[str, Any]:
        """Ray's runtime_env fields for ``code_env``, its packages in Ray's store."""
        self.ensure(code_env)
        out: dict[str, Any] = {}
        if code_env.working_dir is not None:
            out["working_dir"] = uri(code_env.working_dir)
        if code_env.py_modules:
            out["py_modules"] = [uri(p) for p in code_env.py_modules]
        return out

    def ensure(self, code_env: CodeEnv | None) -> None:
        """Every package of ``code_env`` is in Ray's store and pinned there."""
        if code_env is None:
            return
        now = time.monotonic()
        for package in (code_env.working_dir, *code_env.py_modules):
            if package is None:
                continue
            with self._lock:
                if now - self._pinned.get(package.hash, -_REPIN_S) < _REPIN_S:
                    continue
                self._pinned[package.hash] = now
            _put(package)


def _put(package: Package) -> None:
    from ray._private.runtime_env.packaging import (
        package_exists,
        pin_runtime_env_uri,
        upload_package_to_gcs,
    )

    name = uri(package)
    pin_runtime_env_uri(name)
    if not package_exists(name):
        upload_package_to_gcs(name, package.blob)
