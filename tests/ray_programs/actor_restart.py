"""Ray fault tolerance: an actor restarted after its process dies (max_restarts,
max_task_retries), task retries (max_retries, retry_exceptions), RayActorError when out
of restarts."""

import os

import actorlib as ray

ray.init(num_cpus=2)


@ray.remote(max_restarts=2, max_task_retries=-1)
class Actor:
    def __init__(self):
        self.counter = 0

    def increment_and_possibly_fail(self):
        self.counter += 1
        if self.counter == 3:
            os._exit(0)  # the process dies; the actor restarts with a fresh state
        return self.counter

    def restarted(self):
        return ray.get_runtime_context().was_current_actor_reconstructed


actor = Actor.remote()
values = [ray.get(actor.increment_and_possibly_fail.remote()) for _ in range(6)]
assert values == [1, 2, 1, 2, 1, 2], values  # each failing call retried after a restart
assert ray.get(actor.restarted.remote()) is True
try:  # a third death is one too many
    ray.get(actor.increment_and_possibly_fail.remote())
except ray.exceptions.RayActorError as err:
    print("actor died:", type(err).__name__)
else:
    raise AssertionError("the actor survived its last restart")


@ray.remote(max_retries=3, retry_exceptions=True)
def flaky(counter):
    n = ray.get(counter.increment_and_possibly_fail.remote())
    if n < 2:
        raise ValueError("try again")
    return n


@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def increment_and_possibly_fail(self):
        self.n += 1
        return self.n


assert ray.get(flaky.remote(Counter.remote())) == 2


@ray.remote(max_retries=1)
def dies_once(counter):
    if ray.get(counter.increment_and_possibly_fail.remote()) == 1:
        os._exit(1)  # the worker process dies: a system failure, retried
    return "survived"


assert ray.get(dies_once.remote(Counter.remote())) == "survived"
try:
    ray.get(dies_once.options(max_retries=0).remote(Counter.remote()))
except ray.exceptions.WorkerCrashedError:
    pass
else:
    raise AssertionError("a crashed task without retries succeeded")
ray.shutdown()
print("OK")
