"""Ray API: concurrency groups of an async actor and threaded actors."""

import asyncio
import threading

import actorlib as ray

ray.init(num_cpus=2)


@ray.remote(concurrency_groups={"io": 2, "compute": 1})
class AsyncIOActor:
    def __init__(self):
        self.event = asyncio.Event()

    @ray.method(concurrency_group="io")
    async def wait_io(self):
        await self.event.wait()
        return "io done"

    @ray.method(concurrency_group="compute")
    async def compute(self):
        self.event.set()
        return "computed"


@ray.remote(max_concurrency=2)
class Threaded:
    def __init__(self):
        self.barrier = threading.Barrier(2, timeout=30)

    def meet(self):
        self.barrier.wait()  # two calls at once, or this times out
        return threading.get_ident()


actor = AsyncIOActor.remote()
waiting = actor.wait_io.remote()
assert ray.get(actor.compute.remote()) == "computed"
assert ray.get(waiting, timeout=30) == "io done"
t = Threaded.remote()
assert len(set(ray.get([t.meet.remote(), t.meet.remote()]))) == 2
ray.shutdown()
print("OK")
