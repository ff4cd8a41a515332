"""Layering runs one way: API -> backends -> core.

- core imports only the core and ``actorlib.exceptions``; it may name the interface it
  drives (``actorlib.backends.base``) in annotations, under ``if TYPE_CHECKING:``, never
  at run time;
- backends import only backends, the core and ``actorlib.exceptions``, never the API;
- API modules reach backends only through the composition roots (``session``, which picks
  and starts one, and the command line), never a backend module directly.

Imports are read with ast (including imports inside functions), so a lazy import cannot
slip past.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG_DIRS = {"actorlib": ROOT / "actorlib", "actorlib.backends": ROOT / "backends"}
# Where the API picks and starts a backend: the only API modules that may import one.
# ``actorlib.testing`` starts the deterministic ``sim`` backend under a schedule of its own.
COMPOSITION_ROOTS = {
    "actorlib.session", "actorlib.__main__", "actorlib.cluster_cli", "actorlib.testing",
    "actorlib.state_cli",  # the state CLI asks a cluster's head, as cluster_cli does
    "actorlib.debug_cli",  # `actorlib stack` signals workers (backends.stacks)
    "actorlib._testing",  # the test suite's hooks: they may look inside a backend
}


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


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST, at_runtime: bool) -> list[ast.AST]:
    """Every node, or (``at_runtime``) those outside ``if TYPE_CHECKING:`` blocks."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if at_runtime and isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def imported_modules(
    source: str, module: str, is_package: bool, *, at_runtime: bool = False
) -> set[str]:
    """Absolute names of the actorlib modules a source file imports (``at_runtime``:
    leaving out imports made only for the type checker)."""
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in _nodes(tree, at_runtime):
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
    """At run time the core imports only itself and the exceptions."""
    return not (name == "actorlib.core" or name.startswith("actorlib.core.")
                or name == "actorlib.exceptions")


def core_type_violation(name: str) -> bool:
    """For annotations it may also name the backend interface it drives."""
    return core_violation(name) and name != "actorlib.backends.base"


def api_violation(name: str) -> bool:
    return name == "actorlib.backends" or name.startswith("actorlib.backends.")


def backend_violation(name: str) -> bool:
    allowed = name.startswith(("actorlib.backends", "actorlib.core")) or name in (
        "actorlib.exceptions",
    )
    return not allowed


def _files(base: Path) -> list[Path]:
    return sorted(p for p in base.rglob("*.py") if "__pycache__" not in p.parts)


def _violations(files: list[Path], rule, *, at_runtime: bool = False) -> list[str]:
    bad = []
    for path in files:
        mod = _module_name(path)
        found = imported_modules(path.read_text(), mod, _is_package(path), at_runtime=at_runtime)
        for imp in sorted(found):
            if rule(imp):
                bad.append(f"{path.relative_to(ROOT)} imports {imp}")
    return bad


def test_core_imports_only_itself_at_run_time():
    files = _files(ROOT / "actorlib" / "core")
    assert files, "no core modules found"
    assert _violations(files, core_violation, at_runtime=True) == []
    assert _violations(files, core_type_violation) == []


def test_api_reaches_backends_only_through_the_composition_roots():
    files = [
        p for p in _files(ROOT / "actorlib")
        if "core" not in p.relative_to(ROOT / "actorlib").parts[:1]
        and p.relative_to(ROOT / "actorlib").parts[0] != "backends"
        and _module_name(p) not in COMPOSITION_ROOTS
    ]
    assert any(p.name == "api.py" for p in files), "API modules missing"
    assert _violations(files, api_violation) == []


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
            True,
        ),
        (
            "from actorlib.backends.base import Backend",
            "actorlib.core.x",
            False,
            core_type_violation,
            False,
        ),
        (
            "from actorlib.backends.thread import T",
            "actorlib.core.x",
            False,
            core_type_violation,
            True,
        ),
        ("from actorlib.options import x", "actorlib.core.x", False, core_violation, True),
        ("from actorlib.backends import load", "actorlib.api", False, api_violation, True),
        ("from actorlib.core import ids", "actorlib.api", False, api_violation, False),
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


def test_checker_tells_type_only_imports_apart():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from actorlib.backends.base import Backend\n"
        "else:\n    from actorlib.backends.thread import T\n"
    )
    everything = imported_modules(source, "actorlib.core.x", False)
    assert {"actorlib.backends.base", "actorlib.backends.thread"} <= everything
    at_runtime = imported_modules(source, "actorlib.core.x", False, at_runtime=True)
    assert "actorlib.backends.base" not in at_runtime
    assert "actorlib.backends.thread" in at_runtime
