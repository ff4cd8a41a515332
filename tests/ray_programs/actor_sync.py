"""Ray pattern: an actor (a distributed asyncio.Event) synchronizes other tasks."""

import asyncio

import actorlib as ray

ray.init(num_cpus=4)


@ray.remote(num_cpus=0)
class SignalActor:
    def __init__(self):
        self.ready_event = asyncio.Event()

    def send(self, clear=False):
        self.ready_event.set()
        if clear:
            self.ready_event.clear()

    async def wait(self, should_wait=True):
        if should_wait:
            await self.ready_event.wait()


@ray.remote
def wait_and_go(signal, i):
    ray.get(signal.wait.remote())
    return i


signal = SignalActor.remote()
tasks = [wait_and_go.remote(signal, i) for i in range(4)]
ready, not_ready = ray.wait(tasks, num_returns=len(tasks), timeout=0.5)
assert ready == [], "tasks ran before the signal"
ray.get(signal.send.remote())
assert ray.get(tasks, timeout=30) == [0, 1, 2, 3]
ray.shutdown()
print("OK")
