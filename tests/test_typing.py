"""Static typing: mypy infers ObjectRef[T] from @remote functions (sync and async def).

A second file with deliberately wrong expectations must make mypy fail, so this test can
tell inference from Any.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

GOOD = textwrap.dedent(
    """
    from typing_extensions import assert_type

    import actorlib
    from actorlib import ObjectRef


    @actorlib.remote
    def f(x: int) -> str:
        return str(x)


    @actorlib.remote
    async def g(x: int) -> int:
        return x


    assert_type(f.remote(1), ObjectRef[str])
    assert_type(g.remote(1), ObjectRef[int])
    assert_type(actorlib.get(f.remote(1)), str)


    async def main() -> None:
        assert_type(await f.remote(1), str)
        assert_type(await g.remote(2), int)
    """
)

BAD = textwrap.dedent(
    """
    from typing_extensions import assert_type

    import actorlib
    from actorlib import ObjectRef


    @actorlib.remote
    def f(x: int) -> str:
        return str(x)


    assert_type(f.remote(1), ObjectRef[int])
    """
)


def test_mypy_infers_object_ref_types(tmp_path):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed in this interpreter")
    (tmp_path / "good_sample.py").write_text(GOOD)
    (tmp_path / "bad_sample.py").write_text(BAD)
    env = dict(os.environ, MYPYPATH=str(ROOT))  # the source tree, not the editable hook
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-incremental",
            "--follow-imports=silent",
            "--python-version",
            f"{sys.version_info.major}.{sys.version_info.minor}",
            "--config-file",
            os.devnull,
            "good_sample.py",
            "bad_sample.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    out = proc.stdout + proc.stderr
    errors = [line for line in out.splitlines() if ": error:" in line]
    good_errors = [e for e in errors if e.startswith("good_sample.py")]
    bad_errors = [e for e in errors if e.startswith("bad_sample.py")]
    assert good_errors == [], out
    assert len(bad_errors) == 1 and "ObjectRef[str]" in bad_errors[0], out
    assert proc.returncode == 1, out


# -- what users see: decorators, .remote() arguments, get/wait, actor handles -------------
#
# Each snippet marks the lines where mypy must report an error with ``# E: <text>`` (the
# text must appear in that line's message); every other line must check cleanly. The
# snippets run twice: with the plugin (``plugins = actorlib.mypy``) and without it.

TASKS = """
from typing_extensions import assert_type

import actorlib
from actorlib import ObjectRef, RemoteFunction


@actorlib.remote
def f(x: int) -> str:
    return str(x)


@actorlib.remote(num_cpus=2, max_retries=1)
def g(x: int, *, scale: float = 1.0) -> float:
    return x * scale


@actorlib.remote(num_cpus=1)
async def h(x: int) -> list[int]:
    return [x]


@actorlib.remote
def many(*xs: int, **named: str) -> int:
    return len(xs) + len(named)


@actorlib.remote(num_cpus=2)
def kept(x: int) -> str:
    return str(x)


same: RemoteFunction[[int], str] = kept
other: RemoteFunction[[str], str] = kept  # E: Incompatible types in assignment
assert_type(g.remote(1, scale=2.0), ObjectRef[float])
assert_type(h.remote(1), ObjectRef[list[int]])
assert_type(g.options(num_cpus=1).remote(1), ObjectRef[float])
assert_type(many.remote(1, 2, a="x"), ObjectRef[int])

f.remote("a", 2)  # E: Too many arguments # E: incompatible type "str"
f.remote()  # E: Missing positional argument "x"
g.remote(1, scale="big")  # E: Argument "scale" to "remote" of "RemoteFunction"
g.remote(1, 2.0)  # E: Too many positional arguments
g.options(num_cpus=1).remote("x")  # E: incompatible type "str"
many.remote("a")  # E: incompatible type "str"
many.remote(b=1)  # E: incompatible type "int"
n: int = f.remote(1)  # E: Incompatible types in assignment

r_int = actorlib.put(1)
r_str = f.remote(1)
f.remote(r_str)  # E: incompatible type "ObjectRef[str]"
h.remote(r_int)  # E-NOPLUGIN: incompatible type "ObjectRef[int]"
g.remote(r_int, scale=r_int)  # E-NOPLUGIN: Argument 1 # E-NOPLUGIN: Argument "scale"
many.remote(r_int, 2, a=f.remote(3))  # E-NOPLUGIN: Argument 1 # E-NOPLUGIN: Argument "a"

assert_type(actorlib.get(r_str), str)
assert_type(actorlib.get([r_str, f.remote(2)]), list[str])
assert_type(actorlib.get([r_int, r_str]), list[object])
assert_type(actorlib.get((r_int,)), list[int])
assert_type(actorlib.get((r_int, r_str)), list[int | str])
assert_type(actorlib.get((r_int, r_str, h.remote(1))), list[int | str | list[int]])
assert_type(actorlib.get([r_int], timeout=1.0), list[int])
s: str = actorlib.get(r_int)  # E: Incompatible types in assignment
t: list[str] = actorlib.get([r_int])  # E: List item 0 has incompatible type "ObjectRef[int]"
actorlib.get(1)  # E: No overload variant of "get" matches
actorlib.get([1, 2])  # E: Argument 1 to "get" has incompatible type "list[int]"

ready, rest = actorlib.wait([r_str, f.remote(2)], num_returns=1)
assert_type(ready, list[ObjectRef[str]])
assert_type(rest, list[ObjectRef[str]])
for done in actorlib.as_completed([r_str]):
    assert_type(done, ObjectRef[str])


async def main() -> None:
    assert_type(await f.remote(1), str)
    assert_type(await actorlib.get_async(r_int), int)
    assert_type(await actorlib.get_async([r_int, r_int]), list[int])
    assert_type(await actorlib.get_async((r_int, r_str)), list[int | str])
    got = await actorlib.wait_async([r_int], timeout=0.1)
    assert_type(got, tuple[list[ObjectRef[int]], list[ObjectRef[int]]])
    async for one in actorlib.as_completed([r_int]):
        assert_type(one, ObjectRef[int])
"""

ACTORS = """
from typing import Any

from typing_extensions import assert_type

import actorlib
from actorlib import ActorClass, ActorHandle, ActorMethod, ObjectRef


@actorlib.remote(num_cpus=1, max_restarts=1)
class Counter:
    def __init__(self, start: int, *, step: int = 1) -> None:
        self.n = start
        self.step = step

    def incr(self, by: int = 1) -> int:
        self.n += by * self.step
        return self.n

    @actorlib.method(num_returns=1)
    def label(self, prefix: str) -> str:
        return f"{prefix}{self.n}"

    async def snapshot(self) -> dict[str, int]:
        return {"n": self.n}

    @staticmethod
    def version() -> bytes:
        return b"1"


class Plain:
    def __init__(self, name: str) -> None:
        self.name = name

    def hello(self) -> str:
        return self.name


PlainActor = actorlib.remote(Plain)
assert_type(PlainActor, ActorClass[Plain])
p = PlainActor.remote("x")
assert_type(p, ActorHandle[Plain])
assert_type(p.hello.remote(), ObjectRef[str])  # E-NOPLUGIN: "ObjectRef[Any]", not
PlainActor.remote(1)  # E-PLUGIN: incompatible type "int"
PlainActor.options(num_cpus=1).remote()  # E-PLUGIN: Missing positional argument "name"

c = Counter.remote(0, step=2)  # E-NOPLUGIN: has no attribute "remote"
assert_type(c, ActorHandle[Counter])  # E-NOPLUGIN: Expression is of type "Any"
method: ActorMethod[[int], int] = c.incr
not_it: ActorMethod[[str], int] = c.incr  # E-PLUGIN: Incompatible types in assignment
assert_type(c.incr.remote(), ObjectRef[int])  # E-NOPLUGIN: Expression is of type "Any"
assert_type(c.label.remote("n="), ObjectRef[str])  # E-NOPLUGIN: Expression is of type "Any"
assert_type(c.snapshot.remote(), ObjectRef[dict[str, int]])  # E-NOPLUGIN: Expression is of
assert_type(c.version.remote(), ObjectRef[bytes])  # E-NOPLUGIN: Expression is of type "Any"
assert_type(c.incr.options(max_task_retries=1).remote(2), ObjectRef[int])  # E-NOPLUGIN: Any
assert_type(Counter.options(max_restarts=2).remote(1), ActorHandle[Counter])  # E-NOPLUGIN: no
assert_type(actorlib.get(p.hello.remote()), str)  # E-NOPLUGIN: Expression is of type "Any"

r_int = actorlib.put(5)
Counter.remote(r_int, step=r_int)  # E-NOPLUGIN: has no attribute "remote"
c.incr.remote(r_int)
c.incr.remote(by=r_int)
p.hello.remote(1)  # E-PLUGIN: Too many arguments for "remote" of "ActorMethod"

Counter.remote("zero")  # E-PLUGIN: incompatible type "str" # E-NOPLUGIN: has no attribute
Counter.remote(0, 1)  # E-PLUGIN: Too many positional arguments # E-NOPLUGIN: no attribute
Counter.options(max_restarts=2).remote("x")  # E-PLUGIN: "str" # E-NOPLUGIN: no attribute
Counter(0)  # E-PLUGIN: Actor class "Counter" cannot be instantiated directly
c.incr.remote("x")  # E-PLUGIN: incompatible type "str"
c.decr.remote()  # E-PLUGIN: Actor "Counter" has no method "decr"
c.label.remote()  # E-PLUGIN: Missing positional argument "prefix"
r_str = actorlib.put("s")
c.incr.remote(r_str)  # E-PLUGIN: incompatible type "ObjectRef[str]"
wrong: ObjectRef[str] = c.incr.remote()  # E-PLUGIN: Incompatible types in assignment


def use(counter: ActorHandle[Counter]) -> int:
    return actorlib.get(counter.incr.remote(1))


def misuse(counter: ActorHandle[Counter]) -> str:
    return actorlib.get(counter.incr.remote(1))  # E-PLUGIN: Incompatible return value


found = actorlib.get_actor("counter")
assert_type(found, ActorHandle[Any])
assert_type(found.anything.remote(1, x=2), ObjectRef[Any])
"""

SNIPPETS = {"tasks.py": TASKS, "actors.py": ACTORS}


_MARK = re.compile(r"# (E|E-PLUGIN|E-NOPLUGIN): (.*?)(?=\s+# E|$)")


def _expected(source: str, plugin: bool) -> dict[int, list[str]]:
    """Line number -> the texts its errors must contain, in this configuration."""
    applies = {"E", "E-PLUGIN"} if plugin else {"E", "E-NOPLUGIN"}
    expected: dict[int, list[str]] = {}
    for number, line in enumerate(source.splitlines(), start=1):
        texts = [text for kind, text in _MARK.findall(line) if kind in applies]
        if texts:
            expected[number] = texts
    return expected


def _mypy(tmp_path: Path, plugin: bool) -> dict[str, dict[int, list[str]]]:
    """Run mypy on every snippet; file -> line -> error messages."""
    config = tmp_path / "mypy.ini"
    config.write_text(
        "[mypy]\n" + ("plugins = actorlib.mypy\n" if plugin else "")
    )
    for name, source in SNIPPETS.items():
        (tmp_path / name).write_text(source)
    env = dict(os.environ, MYPYPATH=str(ROOT))  # the source tree, not the editable hook
    proc = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent",
            "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}",
            "--config-file", str(config), "--hide-error-context", "--no-error-summary",
            *SNIPPETS,
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=170,
    )
    found: dict[str, dict[int, list[str]]] = {name: {} for name in SNIPPETS}
    for line in (proc.stdout + proc.stderr).splitlines():
        parts = line.split(":", 3)
        if len(parts) == 4 and parts[0] in found and parts[2].strip() == "error":
            found[parts[0]].setdefault(int(parts[1]), []).append(parts[3].strip())
        elif ": error:" in line or "INTERNAL ERROR" in line or "Traceback" in line:
            raise AssertionError(proc.stdout + proc.stderr)
    return found


@pytest.fixture(scope="module", params=[True, False], ids=["plugin", "no-plugin"])
def mypy_report(request, tmp_path_factory):
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed in this interpreter")
    plugin = request.param
    return plugin, _mypy(tmp_path_factory.mktemp("typing"), plugin)


@pytest.mark.parametrize("snippet", sorted(SNIPPETS))
def test_mypy_reports_exactly_the_marked_errors(mypy_report, snippet):
    plugin, found = mypy_report
    source = SNIPPETS[snippet]
    expected = _expected(source, plugin)
    lines = source.splitlines()
    problems = []
    for number in sorted(set(expected) | set(found[snippet])):
        messages = found[snippet].get(number, [])
        wanted = expected.get(number, [])
        code = lines[number - 1].split("  # ")[0]
        if not wanted:
            problems.append(f"{snippet}:{number}: unexpected {messages} on {code!r}")
        elif not messages:
            problems.append(f"{snippet}:{number}: no error, expected {wanted} on {code!r}")
        else:
            missing = [w for w in wanted if not any(w in m for m in messages)]
            if missing:
                problems.append(f"{snippet}:{number}: {messages} lack {missing} on {code!r}")
    assert not problems, "\n".join(problems)
