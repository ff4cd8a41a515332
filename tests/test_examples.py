"""Every examples/*.py runs to completion in a fresh interpreter and leaves nothing behind."""

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
def test_example_runs(example, backend_name):
    run_script(str(example), backend_name)
