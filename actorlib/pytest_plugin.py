"""actorlib's pytest plugin: the ``sim`` fixture (registered through the ``pytest11`` entry
point, so installing actorlib is enough).

```python
def test_counter(sim):
    c = Counter.remote()
    assert actorlib.get([c.incr.remote() for _ in range(3)]) == [1, 2, 3]
```

The fixture runs the test on the deterministic ``sim`` backend (``actorlib.testing.simulate``)
and yields the :class:`~actorlib.testing.Simulation`. ``@pytest.mark.sim(seed=3,
max_steps=5000, num_cpus=2)`` sets its arguments; ``$ACTORLIB_SIM_REPLAY`` replays a trace.
A failing test's report gets a section with the trace that replays it. Kept apart from
:mod:`actorlib.testing` so that loading the plugin (every pytest run where actorlib is
installed) imports nothing until a test asks for the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["sim"]

_RUN = "_actorlib_sim_run"
_FAILED = "_actorlib_sim_failed"  # the call failed: its report already says why


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sim(seed=None, trace=None, max_steps=20000, **init_kwargs): arguments of the "
        "actorlib `sim` fixture (actorlib.testing.simulate)",
    )


@pytest.fixture
def sim(request: pytest.FixtureRequest) -> Iterator[Any]:
    """actorlib started on the ``sim`` backend for this test; shut down after it."""
    from actorlib.testing import SimulationError, simulate

    kwargs: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("sim"))):
        if marker.args:
            raise TypeError("@pytest.mark.sim takes keyword arguments only (seed=, trace=, ...)")
        kwargs.update(marker.kwargs)
    try:
        with simulate(**kwargs) as run:
            setattr(request.node, _RUN, run)
            yield run
    except SimulationError:
        if not getattr(request.node, _FAILED, False):
            raise  # the body caught it, yet the run failed: the test fails here


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that ran under the ``sim`` fixture: add how to replay it."""
    rep = yield
    run = getattr(item, _RUN, None)
    if run is not None and rep.failed and rep.when == "call":
        setattr(item, _FAILED, True)
        rep.sections.append((
            "actorlib sim",
            f"{run.steps} steps, virtual time {run.now:g}s\n"
            f"replay with: ACTORLIB_SIM_REPLAY={run.trace!r} (or @pytest.mark.sim("
            f"trace={run.trace!r}))",
        ))
    return rep
