"""The ``sim`` backend's deadlock report: when nothing can run, the cycle of waits (who
waits for which call or task, queued behind whom), then every wait."""

from __future__ import annotations

import asyncio

import pytest

import actorlib
from actorlib.testing import DeadlockError, simulate


def _deadlock(body) -> str:
    with pytest.raises(DeadlockError) as info, simulate():
        body()
    assert info.value.trace.startswith("sim1:")
    return str(info.value)


def _cycle(message: str) -> list[str]:
    """The lines of the reported cycle, without their indentation."""
    lines = message.splitlines()
    start = lines.index("  cycle of waits:") + 1
    out = []
    for line in lines[start:]:
        if not line.startswith("    "):
            break
        out.append(line.strip())
    return out


@actorlib.remote(num_cpus=0)
class SelfCaller:
    def outer(self, me):
        return actorlib.get(me.inner.remote())

    def inner(self):
        return 1


def test_an_actor_calling_itself_synchronously_is_a_cycle_of_two():
    def body():
        a = SelfCaller.remote()
        actorlib.get(a.outer.remote(a))

    message = _deadlock(body)
    assert _cycle(message) == [
        "SelfCaller#1.outer from driver waits for SelfCaller#1.inner (queued on SelfCaller#1)",
        "SelfCaller#1.inner (queued on SelfCaller#1) waits for SelfCaller#1, busy with "
        "SelfCaller#1.outer from driver",
    ], message
    assert "driver waits for SelfCaller#1.outer from driver" in message


@actorlib.remote(num_cpus=0)
class Ping:
    def ping(self, other, me):
        return actorlib.get(other.pong.remote(me))

    def ping_back(self):
        return "never"


@actorlib.remote(num_cpus=0)
class Pong:
    def pong(self, pinger):
        return actorlib.get(pinger.ping_back.remote())


def test_two_actors_calling_each_other_synchronously():
    def body():
        ping, pong = Ping.remote(), Pong.remote()
        actorlib.get(ping.ping.remote(pong, ping))

    cycle = _cycle(_deadlock(body))
    assert cycle == [
        "Ping#1.ping from driver waits for Pong#1.pong from Ping#1",
        "Pong#1.pong from Ping#1 waits for Ping#1.ping_back (queued on Ping#1)",
        "Ping#1.ping_back (queued on Ping#1) waits for Ping#1, busy with "
        "Ping#1.ping from driver",
    ], cycle


@actorlib.remote(num_cpus=0)
class Box:
    def __init__(self):
        self.refs = []

    def put(self, refs):
        self.refs = refs

    def take(self):
        return self.refs


@actorlib.remote(num_cpus=0)
def wait_for_own_result(box):
    (mine,) = actorlib.get(box.take.remote())
    return actorlib.get(mine)


def test_a_task_getting_its_own_result():
    def body():
        box = Box.remote()
        ref = wait_for_own_result.remote(box)
        box.put.remote([ref])  # before the task's take: first come, first served
        actorlib.get(ref)

    message = _deadlock(body)
    assert _cycle(message) == [
        "task wait_for_own_result#1 waits for task wait_for_own_result#1"
    ], message
    assert "driver waits for task wait_for_own_result#1" in message


@actorlib.remote(num_cpus=0, max_concurrency=1)
class Asker:
    async def ask(self, teller, me):
        return await teller.tell.remote(me)

    async def answer(self):
        return 42


@actorlib.remote(num_cpus=0)
class Teller:
    def tell(self, asker):
        return actorlib.get(asker.answer.remote())


def test_an_async_actors_await_is_part_of_the_cycle():
    def body():
        asker, teller = Asker.remote(), Teller.remote()
        actorlib.get(asker.ask.remote(teller, asker))

    cycle = _cycle(_deadlock(body))
    assert cycle == [
        "Asker#1.ask from driver waits for Teller#1.tell from Asker#1",
        "Teller#1.tell from Asker#1 waits for Asker#1.answer (queued on Asker#1)",
        "Asker#1.answer (queued on Asker#1) waits for Asker#1, busy with "
        "Asker#1.ask from driver",
    ], cycle


@actorlib.remote(num_cpus=0)
class Holder:
    async def hold(self, event_box):
        await asyncio.Event().wait()  # nothing will set it


def test_no_cycle_is_claimed_where_there_is_none():
    def body():
        holder = Holder.remote()
        actorlib.get(holder.hold.remote(None))

    message = _deadlock(body)
    assert "cycle of waits" not in message, message
    lines = message.splitlines()
    start = lines.index("  chain of waits (no cycle: it ends outside the simulated work):")
    assert [line.strip() for line in lines[start + 1:start + 3]] == [
        "driver waits for Holder#1.hold from driver",
        "Holder#1.hold from driver waits for an await on something other than an actorlib "
        "object, which nothing here ends",
    ], message
