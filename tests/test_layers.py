"""Layering: core never imports the API or a concrete backend; backends never import the API.

Imports are read with ast (including imports inside functions), so a lazy import cannot
slip past. Allowed for core: anything but actorlib.backends.<not base> and the API modules;
allowed for backends: actorlib.backends.*, actorlib.core.*, actorlib.exceptions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG_DIRS = {"actorlib": ROOT / "actorlib", "actorlib.backends": ROOT / "backends"}
API_MODULES = {"actorlib.api", "actorlib.remote_function", "actorlib.actor", "actorlib.executor"}


def _module_name(path: Path) -> str:
    for pkg, base in sorted(PKG_DIRS.items(), key=lambda kv: -len(kv[0])):
        if base in path.parents or path.parent == base:
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            return ".".join([pkg, *parts])
    raise ValueError(path)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _module_exists(name: str) -> bool:
    """Whether ``name`` is a module or package in this repository."""
    for pkg, base in sorted(PKG_DIRS.items(), key=lambda kv: -len(kv[0])):
        if name == pkg:
            return True
        if name.startswith(pkg + "."):
            rel = Path(*name[len(pkg) + 1 :].split("."))
            return (base / rel).with_suffix(".py").exists() or (base / rel / "__init__.py").exists()
    return False


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute names of the actorlib modules a source file imports."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if _module_exists(sub) else base)
    return {m for m in out if m == "actorlib" or m.startswith("actorlib.")}


def core_violation(name: str) -> bool:
    if name == "actorlib" or name in API_MODULES:
        return True
    if any(name.startswith(api + ".") for api in API_MODULES):
        return True
    return (
        name.startswith("actorlib.backends")
        and name not in ("actorlib.backends.base",)
        and not name.startswith("actorlib.backends.base.")
    )


def backend_violation(name: str) -> bool:
    allowed = name.startswith(("actorlib.backends", "actorlib.core")) or name in (
        "actorlib.exceptions",
    )
    return not allowed


def _files(base: Path) -> list[Path]:
    return sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts)


def _violations(files: list[Path], rule) -> list[str]:
    bad = []
    for path in files:
        mod = _module_name(path)
        for imp in sorted(imported_modules(path.read_text(), mod, _is_package(path))):
            if rule(imp):
                bad.append(f"{path.relative_to(ROOT)} imports {imp}")
    return bad


def test_core_does_not_import_api_or_backends():
    files = _files(ROOT / "actorlib" / "core")
    assert files, "no core modules found"
    assert _violations(files, core_violation) == []


def test_backends_do_not_import_api():
    files = _files(ROOT / "backends")
    assert any(p.name == "base.py" for p in files), "backends/base.py missing"
    assert _violations(files, backend_violation) == []


@pytest.mark.parametrize(
    ("source", "module", "is_pkg", "rule", "bad"),
    [
        ("from actorlib.api import remote", "actorlib.core.x", False, core_violation, True),
        ("import actorlib", "actorlib.core.x", False, core_violation, True),
        ("from actorlib import remote", "actorlib.core.x", False, core_violation, True),
        ("from .. import remote_function", "actorlib.core.x", False, core_violation, True),
        ("from ...backends import thread", "actorlib.core.sub.x", False, core_violation, True),
        ("import actorlib.backends.thread", "actorlib.core.x", False, core_violation, True),
        (
            "def f():\n    from actorlib.actor import A",
            "actorlib.core.x",
            False,
            core_violation,
            True,
        ),
        (
            "from actorlib.backends.base import Backend",
            "actorlib.core.x",
            False,
            core_violation,
            False,
        ),
        ("from . import ids", "actorlib.core", True, core_violation, False),
        (
            "from actorlib.exceptions import TaskError",
            "actorlib.core.x",
            False,
            core_violation,
            False,
        ),
        (
            "from actorlib.remote_function import F",
            "actorlib.backends.t",
            False,
            backend_violation,
            True,
        ),
        ("import actorlib", "actorlib.backends.t", False, backend_violation, True),
        ("from .. import session", "actorlib.backends.t", False, backend_violation, True),
        ("from .base import Backend", "actorlib.backends.t", False, backend_violation, False),
        ("from actorlib.core import specs", "actorlib.backends.t", False, backend_violation, False),
        ("from actorlib import exceptions", "actorlib.backends.t", False, backend_violation, False),
    ],
)
def test_checker_itself(source, module, is_pkg, rule, bad):
    """The import checker flags what it must (so the layer tests above can fail)."""
    found = [m for m in imported_modules(source, module, is_pkg) if rule(m)]
    assert bool(found) is bad, found
