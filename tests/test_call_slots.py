"""Which calls handed to an actor the core reads as running (``actorlib.core.call_slots``).

The host starts calls in hand-over order, at most each group's limit at once, and only
once its constructor returned; so at every moment the calls running are, per group, the
first ``limit`` of that group's calls in flight, in hand-over order. The property drives
the slots with random hand-overs, ends (of running and of waiting calls), opens and
restarts, and checks exactly that after every step.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from actorlib.core.call_slots import CallSlots, group_of
from actorlib.core.mailbox import CallRecord
from actorlib.core.specs import ActorSpec, Args, CallSpec, CodeRef

_GROUPS = {"io": 2, "one": 1}
_CODE = CodeRef(1, "Actor", b"")

# An operation: ("hand", group or None (the method's own), method), ("end", index into
# the calls in flight), ("open",), ("restart",); hand-overs and ends most often.
_hand = st.tuples(st.just("hand"), st.sampled_from([None, "", "io", "one", "nowhere"]),
                  st.sampled_from(["plain", "reads"]))
_end = st.tuples(st.just("end"), st.integers(0, 20))
_ops = st.lists(st.one_of(_hand, _hand, _hand, _end, _end, st.tuples(st.just("open")),
                          st.tuples(st.just("restart"))), max_size=60)


# Pure and quick (about 2 ms an example): more examples than the suite's default profile,
# which finds a missed start in only about one run in three.
@settings(max_examples=max(200, settings.default.max_examples))
@given(max_concurrency=st.integers(1, 2), opened=st.booleans(), ops=_ops)
def test_the_calls_running_are_each_groups_first_in_flight(max_concurrency, opened, ops):
    spec = ActorSpec(1, _CODE, Args(None), {}, max_concurrency=max_concurrency,
                     concurrency_groups=_GROUPS, method_groups={"reads": "io"})
    slots = CallSlots(spec)
    limits = {"": max_concurrency, **_GROUPS}
    in_flight: list[CallRecord] = []  # hand-over order
    is_open = False
    clock = 0.0
    for op in [("open",)] * opened + ops:
        clock += 1.0
        if op[0] == "hand":
            call = CallRecord(CallSpec(len(in_flight) + 100, 1, op[2], Args(None), (), 1,
                                       concurrency_group=op[1]))
            slots.handed(call, clock)
            in_flight.append(call)
        elif op[0] == "end" and in_flight:
            call = in_flight.pop(op[1] % len(in_flight))
            slots.ended(call, clock)
        elif op[0] == "open":
            if not is_open:
                slots.open(clock)
                is_open = True
        elif op[0] == "restart":
            slots.clear(in_flight)
            in_flight.clear()
            is_open = False
        seen: dict[str, int] = {}
        for call in in_flight:
            group = group_of(call.spec, slots.method_groups)
            if group not in limits:  # the host fails it at once: never waits
                assert call.running
                continue
            place = seen.get(group, 0)
            seen[group] = place + 1
            assert call.running == (is_open and place < limits[group]), (op, group, place)
            assert (call.started > 0) == call.running
            assert call.started <= clock
