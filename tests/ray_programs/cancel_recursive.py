"""Ray's "Cancelling tasks": ray.cancel(recursive=True) of a parent cancels the children it
submitted, recursive=False leaves them running; cancelling actor tasks (an async actor's
method sees asyncio.CancelledError, a sync actor's checks is_canceled(), a queued call
never runs), and whatever a cancelled call returns, ray.get raises TaskCancelledError."""

import asyncio
import time

import actorlib as ray

ray.init(num_cpus=4)


@ray.remote
class Tracker:
    def __init__(self):
        self.events = []

    def note(self, event):
        self.events.append(event)

    def count(self, event):
        return self.events.count(event)


def wait_for(tracker, event, n):
    deadline = time.monotonic() + 60
    while ray.get(tracker.count.remote(event)) < n:
        assert time.monotonic() < deadline, (event, ray.get(tracker.count.remote(event)))
        time.sleep(0.05)


@ray.remote
def child(tracker, steps):
    tracker.note.remote("started")
    try:
        for _ in range(steps):
            time.sleep(0.05)
    except KeyboardInterrupt:  # a soft cancel interrupts a running task
        ray.get(tracker.note.remote("cancelled"))
        raise
    ray.get(tracker.note.remote("finished"))
    return "done"


@ray.remote
def parent(tracker, steps):
    return ray.get([child.remote(tracker, steps) for _ in range(3)])


def cancel_parent(steps, **options):
    """Start a parent with 3 children, cancel it once they run; its tracker."""
    tracker = Tracker.remote()
    ref = parent.remote(tracker, steps)
    wait_for(tracker, "started", 3)
    ray.cancel(ref, **options)
    try:
        ray.get(ref, timeout=60)
    except ray.exceptions.TaskCancelledError:
        print("parent cancelled")
    return tracker


# recursive=True (the default): the children are cancelled with their parent.
tracker = cancel_parent(1200, recursive=True)
wait_for(tracker, "cancelled", 3)
print("children cancelled:", ray.get(tracker.count.remote("cancelled")))

# recursive=False: only the parent; its children run to the end.
tracker = cancel_parent(20, recursive=False)
wait_for(tracker, "finished", 3)
print("children finished:", ray.get(tracker.count.remote("finished")))
assert ray.get(tracker.count.remote("cancelled")) == 0


@ray.remote
class AsyncActor:
    async def long_wait(self, tracker):
        tracker.note.remote("started")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await tracker.note.remote("cancelled")
            raise
        return "finished"


tracker = Tracker.remote()
actor = AsyncActor.remote()
ref = actor.long_wait.remote(tracker)
wait_for(tracker, "started", 1)
ray.cancel(ref)
try:
    ray.get(ref, timeout=60)
except ray.exceptions.TaskCancelledError:
    print("async actor task cancelled")
wait_for(tracker, "cancelled", 1)
print("saw asyncio.CancelledError:", ray.get(tracker.count.remote("cancelled")))


@ray.remote
class SyncActor:
    def __init__(self):
        self.calls = []

    def long_running(self, tracker):
        self.calls.append("long_running")
        tracker.note.remote("started")
        for _ in range(1200):
            if ray.get_runtime_context().is_canceled():
                return "stopped early"
            time.sleep(0.05)
        return "completed"

    def queued(self):
        self.calls.append("queued")
        return "ran"

    def history(self):
        return self.calls


tracker = Tracker.remote()
actor = SyncActor.remote()
running = actor.long_running.remote(tracker)
queued = actor.queued.remote()
wait_for(tracker, "started", 1)
ray.cancel(queued)
ray.cancel(running)  # it sees is_canceled() and returns: its caller still gets the cancel
for name, r in [("running", running), ("queued", queued)]:
    try:
        print(name, "returned", ray.get(r, timeout=60))
    except ray.exceptions.TaskCancelledError:
        print(name, "cancelled")
# Not printed: whether the queued call ran. Ray 2.60 sometimes runs a cancelled queued
# actor call anyway (its get still raises TaskCancelledError); actorlib never runs it.
assert ray.get(actor.history.remote())[0] == "long_running"
# ray.cancel(actor_ref, force=True) is refused for an actor task that has not ended.
pending = actor.long_running.remote(tracker)
wait_for(tracker, "started", 2)
refused = None
try:
    ray.cancel(pending, force=True)
except ValueError as error:
    refused = str(error)
assert refused == "force=True is not supported for actor tasks.", refused
print("forced cancel of an actor call refused")
ray.cancel(pending)
try:
    ray.get(pending, timeout=60)
except ray.exceptions.TaskCancelledError:
    print("then cancelled")
ray.shutdown()
print("OK")
