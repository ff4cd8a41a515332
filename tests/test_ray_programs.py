"""Ray Core programs, written against Ray's documented API with ``import actorlib as ray``,
run as users run them: each script in ``tests/ray_programs/`` in a fresh interpreter
(``python script.py``), on the default backend, must exit 0 and print ``OK``.

The scripts follow Ray's Core examples and patterns (nested tasks, ``ray.wait``
backpressure, a synchronizing actor, async actors, Monte Carlo pi, map-reduce, parameter
servers, batch prediction with ``ActorPool``, generators, ``ray.util.queue``, the runtime
context, placement groups, ``ray.cancel`` (recursive, of actor calls), actor restarts,
named actors, the state API and logs, serialization, the ``ActorPool`` API, retries by
exception type, ``ray.wait`` / ``ray.get`` timeouts, ...); where actorlib differs on
purpose, the script says so and docs/ray-compatibility.md lists the difference.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from testkit import run_script

from actorlib.session import DEFAULT_BACKEND

pytestmark = pytest.mark.slow

PROGRAMS = Path(__file__).parent / "ray_programs"
SCRIPTS = sorted(PROGRAMS.glob("*.py"))


def test_the_programs_are_found() -> None:
    assert len(SCRIPTS) >= 20, SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_ray_program_runs_unchanged(script: Path) -> None:
    proc = run_script(str(script), DEFAULT_BACKEND, timeout=90)
    assert proc.stdout.rstrip().endswith("OK"), proc.stdout[-2000:]
