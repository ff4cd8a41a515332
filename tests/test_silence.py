"""backends/silence.py: when a periodic look at peers' silence may judge them."""

from __future__ import annotations

from actorlib.backends.silence import Looks


def test_a_late_look_skips_its_turn_but_never_two_in_a_row() -> None:
    looks = Looks(1.0, 0.0)
    assert not looks.late(1.0)  # on time
    assert not looks.late(2.9)  # a little behind: still within two periods
    assert looks.late(10.0)  # after a stall: skips, the peers' news still unread
    assert not looks.late(11.0)  # on time again: judges
    # A loop always behind: every look is late, yet every second one judges.
    assert [looks.late(t) for t in (14.0, 17.0, 20.0, 23.0)] == [True, False, True, False]
