"""Every ```python block in README.md and docs/*.md runs, so a stale snippet fails the tests.

The blocks of one page run in order in one fresh interpreter, sharing their names (a page
builds on its earlier blocks, as a reader does; ``import actorlib`` is taken as read), on
the thread backend where a block
starts actorlib without naming a backend. A block that cannot run here (it needs a
cluster started by hand, or Ray, or it is a fragment) is preceded by the line
``<!-- no-run -->``. A block made only of signatures (``actorlib.NAME(params) -> type``
lines, as in docs/api.md) is not run but compared with the real signature: the same
parameters, in the same order and kind, with the same defaults. See docs/development.md.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from testkit import leftover_processes

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NO_RUN = "<!-- no-run -->"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


SIGNATURE = re.compile(
    r"^(?:await )?(actorlib(?:\.\w+)+)\((.*?)\)(?:[ \t]*->[^\n]*)?$", re.MULTILINE | re.DOTALL
)


def signatures(code: str) -> list[tuple[str, str]] | None:
    """``[(dotted name, parameter text)]`` if the block is only signature lines, else None."""
    found = [(m.group(1), m.group(2)) for m in SIGNATURE.finditer(code)]
    rest = SIGNATURE.sub("", code).strip()
    return found if found and not rest else None


@dataclass
class Block:
    line: int  # 1-based line of the block's first code line
    code: str
    run: bool


def blocks(text: str) -> list[Block]:
    found = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        line = text.count("\n", 0, m.start(1)) + 1
        found.append(Block(line, m.group(1), before != NO_RUN))
    return found


def _documented(params: str) -> list[tuple[str, str, str | None]]:
    """(name, kind, default source) of each parameter of a documented signature."""
    fn = ast.parse(f"def f({params}): pass").body[0]
    assert isinstance(fn, ast.FunctionDef)
    a = fn.args
    out: list[tuple[str, str, str | None]] = []
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    for arg, d in zip(positional, defaults, strict=True):
        kind = "POSITIONAL_ONLY" if arg in a.posonlyargs else "POSITIONAL_OR_KEYWORD"
        out.append((arg.arg, kind, ast.unparse(d) if d is not None else None))
    if a.vararg:
        out.append(("*", "VAR_POSITIONAL", None))
    for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        out.append((arg.arg, "KEYWORD_ONLY", ast.unparse(d) if d is not None else None))
    if a.kwarg:
        out.append(("**", "VAR_KEYWORD", None))
    return out


def _real(name: str) -> list[tuple[str, str, str | None]]:
    module, _, attr = name.rpartition(".")
    obj = getattr(importlib.import_module(module), attr)
    out: list[tuple[str, str, str | None]] = []
    for p in inspect.signature(obj).parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            out.append(("*", p.kind.name, None))
        elif p.kind is p.VAR_KEYWORD:
            out.append(("**", p.kind.name, None))
        else:
            default = None if p.default is p.empty else repr(p.default)
            out.append((p.name, p.kind.name, default))
    return out


def signature_mismatches(code: str) -> list[str]:
    problems = []
    for name, params in signatures(code) or []:
        documented, real = _documented(params), _real(name)
        if documented != real:
            problems.append(f"{name}: documented {documented}, real {real}")
    return problems


def test_signature_blocks_are_compared_with_the_code():
    assert signatures("x = 1\n") is None
    assert signatures("actorlib.put(value: T) -> ObjectRef[T]\n") == [("actorlib.put", "value: T")]
    assert not signature_mismatches(
        "actorlib.put(value: T, *, _owner: ActorHandle | None = None) -> ObjectRef[T]\n"
    )
    assert signature_mismatches("actorlib.put(value: T) -> ObjectRef[T]\n")
    assert signature_mismatches("actorlib.put(value, *, timeout=None) -> ObjectRef[T]\n")
    assert signature_mismatches("actorlib.kill(actor, *, no_restart: bool = False) -> None\n")
    assert not signature_mismatches(
        "await actorlib.get_async(refs, *, timeout: float | None = None)\n"
    )


def test_extraction_sees_blocks_and_markers():
    text = "# t\n\n```python\nx = 1\n```\n\n<!-- no-run -->\n```python\nimport ray\n```\n"
    got = blocks(text)
    assert [(b.line, b.code, b.run) for b in got] == [
        (4, "x = 1\n", True), (9, "import ray\n", False),
    ]


PAGES_WITH_CODE = [p for p in PAGES if any(b.run for b in blocks(p.read_text()))]


def test_pages_with_code_are_found():
    names = {p.name for p in PAGES_WITH_CODE}
    assert {"README.md", "getting-started.md", "api.md"} <= names, names


RUNNER = textwrap.dedent("""
    import sys
    import actorlib
    ns = {"__name__": "__main__", "actorlib": actorlib}
    for where, code in BLOCKS:
        exec(compile(code, where, "exec"), ns)
    import actorlib
    actorlib.shutdown()
""")


@pytest.mark.parametrize("page", PAGES_WITH_CODE,
                         ids=[str(p.relative_to(ROOT)) for p in PAGES_WITH_CODE])
def test_page_code_blocks_run(page, tmp_path):
    rel = str(page.relative_to(ROOT))
    found = blocks(page.read_text())
    stale = [f"{rel}:{b.line}: {p}" for b in found if b.run for p in signature_mismatches(b.code)]
    assert not stale, "documented signatures differ from the code:\n" + "\n".join(stale)
    found = [b for b in found if b.run and signatures(b.code) is None]
    script = tmp_path / "snippets.py"
    script.write_text(
        f"BLOCKS = {[(f'{rel}:{b.line}', b.code) for b in found]!r}\n" + RUNNER
    )
    token = uuid.uuid4().hex
    env = dict(os.environ, ACTORLIB_BACKEND="thread", ACTORLIB_TEST_RUN_TOKEN=token)
    env.pop("PYTEST_CURRENT_TEST", None)
    proc = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    left = leftover_processes(token)
    for p in left:
        p.kill()
    detail = f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"
    assert proc.returncode == 0, f"a code block of {rel} failed\n{detail}"
    assert "Traceback" not in proc.stderr, detail
    assert not left, f"processes left behind: {[p.pid for p in left]}"
