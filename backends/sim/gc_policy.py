"""The garbage collector's policy for the length of a simulated run, restored after it.

A simulated run executes in the user's test process, whose heap (pytest, hypothesis, the
test's own data) every full collection walks, and a step allocates a few dozen short-lived
containers (a submission's spec and record, a result's outcome), so collections come
often: 10 to 16 % of a step went to them. For the run: what exists when it starts (the
runtime just started, the test process) is frozen out of the collector's generations
(``gc.freeze``: collections no longer walk it), and the youngest generation collects less
often. Both are put back when the run stops, whatever it ended with. Neither changes what
the run does: the collector frees only cyclic garbage, which no step's outcome depends on.
Separate because it is about the process, not about the run.

A process that freezes objects itself (a pre-fork server, a test suite that freezes its
heap between modules) keeps its freeze, and is not asked again: ``gc.get_freeze_count``
walks the whole frozen heap (44 ms with two million objects), a cost every run would pay.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "GcPolicy", "forget_process_freezes"]

#: Allocations (less deallocations) between two collections of the youngest generation
#: during a run (Python's default is 700): most of a step's objects die young, freed by
#: reference counting, so few are left for each collection to walk.
YOUNG_THRESHOLD = 20_000

#: Set once a run found objects frozen that no run froze: from then on runs leave the
#: permanent generation to the process and never count it again.
_process_freezes = False
#: Runs whose own freeze is in place now (a run inside another's sees that freeze).
_runs_frozen = 0


def forget_process_freezes() -> None:
    """Count again at the next run (for a process that unfroze everything it froze)."""
    global _process_freezes
    _process_freezes = False


class GcPolicy:
    """Apply the run's collector settings (:meth:`enter`) and put back the process's
    (:meth:`exit`), leaving alone whatever the process set meanwhile or had set itself."""

    def __init__(self) -> None:
        self._saved: tuple[int, int, int] | None = None
        self._set: tuple[int, int, int] | None = None
        self._froze = False

    def enter(self) -> None:
        global _process_freezes, _runs_frozen
        saved = gc.get_threshold()
        # A process that froze objects itself keeps its own freeze (an ``exit`` would
        # unfreeze them too); one that turned the collector off (a zero threshold)
        # keeps its settings. Counting an empty permanent generation costs nothing.
        if not _process_freezes and not _runs_frozen:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                self._froze = True
                _runs_frozen += 1
            else:
                _process_freezes = True
        if saved[0] and saved[0] < YOUNG_THRESHOLD:
            self._saved = saved
            self._set = (YOUNG_THRESHOLD, saved[1], saved[2])
            gc.set_threshold(*self._set)

    def exit(self) -> None:
        if self._set is not None and gc.get_threshold() == self._set:
            assert self._saved is not None
            gc.set_threshold(*self._saved)
        self._saved = self._set = None
        if self._froze:
            global _runs_frozen
            self._froze = False
            _runs_frozen -= 1
            gc.unfreeze()
