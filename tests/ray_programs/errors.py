"""Ray's error handling: RayTaskError keeps the cause's type, GetTimeoutError,
RayActorError after ray.kill, errors of an actor's constructor."""

import time

import actorlib as ray

ray.init(num_cpus=2)


class MyError(Exception):
    pass


@ray.remote
def fails():
    raise MyError("bad input")


@ray.remote
def slow():
    for _ in range(100):
        time.sleep(0.1)


@ray.remote
class Broken:
    def __init__(self):
        raise ZeroDivisionError("no")

    def method(self):
        return 1


@ray.remote
class Fine:
    def ping(self):
        return "pong"


try:
    ray.get(fails.remote())
except MyError as err:
    assert isinstance(err, ray.exceptions.RayTaskError)
    assert "bad input" in str(err)
    assert isinstance(err.as_instanceof_cause(), MyError)
else:
    raise AssertionError("no MyError")
slow_ref = slow.remote()
try:
    ray.get(slow_ref, timeout=0.2)
except ray.exceptions.GetTimeoutError:
    ray.cancel(slow_ref)  # give up on it, as Ray's docs suggest after a timeout
else:
    raise AssertionError("no timeout")
try:
    ray.get(Broken.remote().method.remote())
except ray.exceptions.RayActorError as err:
    assert "ZeroDivisionError" in str(err), err
else:
    raise AssertionError("a broken constructor went unnoticed")
fine = Fine.remote()
assert ray.get(fine.ping.remote()) == "pong"
ray.kill(fine)
try:
    ray.get(fine.ping.remote())
except ray.exceptions.RayActorError:
    pass
else:
    raise AssertionError("a killed actor answered")
ray.shutdown()
print("OK")
