"""``runtime_env`` ``working_dir`` and ``py_modules``: checking the paths, packing the files.

A directory is zipped on the driver, in a fixed order with fixed times, so the same files
give the same bytes and the same content hash (:class:`~actorlib.core.specs.Package`).
Where the work runs, the zip is extracted once per node by that hash: nodes never read the
driver's file system. Packing happens once per ``init`` (the job's environment) and once
per ``@remote`` / ``.options()`` (cached on the remote function or actor class), as Ray
uploads at those points; files changed later are seen by the next ``init`` or ``.options()``.
"""

from __future__ import annotations

import fnmatch
import io
import os
import types
from typing import Any

from actorlib.core.specs import CodeEnv, Package

__all__ = ["MAX_BYTES_ENV", "check_paths", "code_env", "max_package_bytes", "pack"]

#: Skipped everywhere, as Ray does: caches and version-control data.
DEFAULT_EXCLUDES = ("__pycache__", ".git", "*.pyc")
MAX_BYTES_ENV = "ACTORLIB_RUNTIME_ENV_MAX_BYTES"
_DEFAULT_MAX_BYTES = 100 * 1024 * 1024
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def max_package_bytes() -> int:
    """The largest a packed ``working_dir`` or py_module may be (files, uncompressed)."""
    raw = os.environ.get(MAX_BYTES_ENV)
    if not raw:
        return _DEFAULT_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value <= 0:
        raise ValueError(f"{MAX_BYTES_ENV} must be a positive int (bytes), got {raw!r}")
    return value


def _bad(option: str, value: Any, accepted: str) -> TypeError:
    return TypeError(f"{option} must be {accepted}, got {type(value).__name__} {value!r}")


def _local_path(option: str, value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise _bad(option, value, "a local directory path (str or os.PathLike)")
    path = os.fspath(value)
    if not isinstance(path, str):
        raise _bad(option, value, "a local directory path (str or os.PathLike)")
    if "://" in path:
        raise ValueError(
            f"{option}: remote URIs ({path!r}) are not supported; give a local directory"
        )
    return os.path.abspath(path)


def _module_path(option: str, value: Any) -> str:
    """A py_modules entry as an absolute path: a package directory or one ``.py`` file."""
    if isinstance(value, types.ModuleType):
        file = getattr(value, "__file__", None)
        if not file:
            raise ValueError(f"{option}: module {value.__name__!r} has no file to ship")
        base = os.path.basename(file)
        return os.path.dirname(os.path.abspath(file)) if base == "__init__.py" else \
            os.path.abspath(file)
    path = _local_path(option, value)
    if os.path.isdir(path) or (os.path.isfile(path) and path.endswith(".py")):
        return path
    if os.path.exists(path):
        raise ValueError(f"{option}: {path!r} is neither a directory nor a .py file")
    raise FileNotFoundError(f"{option}: {path!r} does not exist")


def check_paths(env: dict[str, Any]) -> dict[str, Any]:
    """``working_dir`` / ``py_modules`` / ``excludes`` of ``env``, checked and made absolute.

    Raises ``TypeError`` / ``ValueError`` / ``FileNotFoundError`` naming the option.
    """
    out: dict[str, Any] = {}
    if env.get("working_dir") is not None:
        path = _local_path("runtime_env['working_dir']", env["working_dir"])
        if not os.path.isdir(path):
            what = "is not a directory" if os.path.exists(path) else "does not exist"
            raise FileNotFoundError(f"runtime_env['working_dir']: {path!r} {what}")
        out["working_dir"] = path
    if env.get("py_modules") is not None:
        modules = env["py_modules"]
        if not isinstance(modules, (list, tuple)):
            raise _bad("runtime_env['py_modules']", modules,
                       "a list of local directories, .py files or imported modules")
        out["py_modules"] = [
            _module_path(f"runtime_env['py_modules'][{i}]", m) for i, m in enumerate(modules)
        ]
    if env.get("excludes") is not None:
        excludes = env["excludes"]
        if not isinstance(excludes, (list, tuple)) or not all(
            isinstance(e, str) for e in excludes
        ):
            raise _bad("runtime_env['excludes']", excludes, "a list of str patterns")
        out["excludes"] = list(excludes)
    return out


def _excluded(rel: str, is_dir: bool, patterns: tuple[str, ...]) -> bool:
    """gitignore-like: a pattern matches the path's name or (with a ``/``) its whole path."""
    name = rel.rsplit("/", 1)[-1]
    for pattern in patterns:
        dir_only = pattern.endswith("/")
        pat = pattern.rstrip("/")
        if dir_only and not is_dir:
            continue
        if "/" in pat:
            if fnmatch.fnmatchcase(rel, pat.lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(name, pat):
            return True
    return False


def _files(root: str, patterns: tuple[str, ...]) -> list[tuple[str, str]]:
    """(archive name, file path) of every file under ``root`` not excluded, sorted."""
    if os.path.isfile(root):
        return [(os.path.basename(root), root)]
    found: list[tuple[str, str]] = []
    for here, dirs, files in os.walk(root):
        rel_here = os.path.relpath(here, root).replace(os.sep, "/")
        prefix = "" if rel_here == "." else rel_here + "/"
        dirs[:] = sorted(d for d in dirs if not _excluded(prefix + d, True, patterns))
        found.extend(
            (prefix + f, os.path.join(here, f)) for f in files
            if not _excluded(prefix + f, False, patterns)
        )
    return sorted(found)


def pack(path: str, option: str, excludes: tuple[str, ...] = (), *, top: str = "") -> Package:
    """Zip ``path`` (under the folder ``top`` in the archive, if given) into a Package.

    Raises ``ValueError`` naming ``option`` and the limit if the files are too large.
    """
    patterns = DEFAULT_EXCLUDES + excludes
    limit = max_package_bytes()
    files = _files(path, patterns)
    total = 0
    for _, file in files:
        total += os.path.getsize(file)
        if total > limit:
            raise ValueError(
                f"{option}: {path!r} holds more than {limit} bytes of files (the limit; "
                f"set {MAX_BYTES_ENV} to change it, or leave files out with "
                "runtime_env['excludes'])"
            )
    import hashlib  # with zipfile, only when a runtime_env has files: not at every init
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, file in files:
            info = zipfile.ZipInfo(f"{top}/{name}" if top else name, _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (os.stat(file).st_mode & 0o777) << 16
            with open(file, "rb") as f:
                archive.writestr(info, f.read())
    blob = buffer.getvalue()
    return Package(hashlib.sha256(blob).hexdigest(), blob)


def code_env(env: dict[str, Any] | None) -> CodeEnv | None:
    """Pack a checked runtime_env's ``working_dir`` and ``py_modules``; None if neither."""
    if not env or (env.get("working_dir") is None and env.get("py_modules") is None):
        return None
    excludes = tuple(env.get("excludes") or ())
    working_dir = None
    if env.get("working_dir") is not None:
        working_dir = pack(env["working_dir"], "runtime_env['working_dir']", excludes)
    modules = tuple(
        # A py_module keeps its own name: its parent goes on sys.path.
        pack(path, f"runtime_env['py_modules'][{i}]", excludes,
             top="" if os.path.isfile(path) else os.path.basename(path))
        for i, path in enumerate(env.get("py_modules") or ())
    )
    return CodeEnv(working_dir, modules)
