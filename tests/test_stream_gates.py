"""The gates that pause a streaming producer (backpressure), keyed by producer id."""

from __future__ import annotations

from actorlib.backends.runner.streaming import Gates


def test_closing_an_attempts_gate_keeps_a_retrys_gate_of_the_same_id():
    """An abandoned attempt (a forced cancel, a kill) may unwind after its retry opened
    the gate of the same id: its close leaves the retry's gate, which still advances."""
    gates = Gates()
    first = gates.open(7)
    retry = gates.open(7)
    gates.close(7, first)
    gates.consumed(7, 3)
    assert retry.consumed == 3
    assert first.consumed == 0
    gates.close(7, retry)
    gates.consumed(7, 5)  # closed: nothing left to advance
    assert retry.consumed == 3
