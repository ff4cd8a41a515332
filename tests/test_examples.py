"""Every examples/*.py runs to completion in a fresh interpreter and leaves nothing behind.

Examples with a full size and a small one read ``ACTORLIB_EXAMPLE_SIZE=small`` (the same
as their ``--small`` flag): the tests run the small size.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from testkit import run_script

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.py"))


def test_required_examples_exist():
    names = {p.name for p in EXAMPLES}
    assert {"quickstart.py", "async_app.py"} <= names, names


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(example, backend_name, monkeypatch):
    monkeypatch.setenv("ACTORLIB_EXAMPLE_SIZE", "small")
    run_script(str(example), backend_name)
