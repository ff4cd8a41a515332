"""Static typing: mypy infers ObjectRef[T] from @remote functions (sync and async def).

A second file with deliberately wrong expectations must make mypy fail, so this test can
tell inference from Any.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
