"""Ray's fault tolerance by exception type and by kill: retry_exceptions as a list (only
those types are retried), .options() overriding it, an actor method's retries of an
application error (max_task_retries with @ray.method(retry_exceptions=...)),
ray.kill(no_restart=False) restarting an actor with max_restarts, and ray.kill ending it."""

import actorlib as ray

ray.init(num_cpus=2)


class Flaky(Exception):
    pass


@ray.remote(num_cpus=0)
class Attempts:
    def __init__(self):
        self.counts = {}

    def next(self, key):
        self.counts[key] = self.counts.get(key, 0) + 1
        return self.counts[key]


@ray.remote(max_retries=3, retry_exceptions=[Flaky])
def fails_until(attempts, key, succeed_on, error):
    n = ray.get(attempts.next.remote(key))
    if n < succeed_on:
        raise error(f"attempt {n}")
    return f"{key}: succeeded on attempt {n}"


attempts = Attempts.remote()
print(ray.get(fails_until.remote(attempts, "flaky", 3, Flaky)))
try:  # a ValueError is not in the list: no retry
    ray.get(fails_until.remote(attempts, "value", 3, ValueError))
except ValueError as err:
    print("not retried:", err.cause, "| attempts:",  # .cause: the ValueError raised
          ray.get(attempts.next.remote("value")) - 1)
try:  # more failures than retries
    ray.get(fails_until.remote(attempts, "many", 10, Flaky))
except Flaky:
    print("out of retries after", ray.get(attempts.next.remote("many")) - 1, "attempts")
print(ray.get(fails_until.options(retry_exceptions=True).remote(attempts, "any", 2, KeyError)))
try:
    ray.get(fails_until.options(max_retries=0).remote(attempts, "none", 2, Flaky))
except Flaky:
    print("max_retries=0: attempts", ray.get(attempts.next.remote("none")) - 1)


@ray.remote(max_restarts=1, max_task_retries=2)
class Service:
    def __init__(self):
        self.calls = 0

    def handle(self):
        self.calls += 1
        return self.calls

    @ray.method(retry_exceptions=[Flaky])
    def flaky(self, attempts):
        n = ray.get(attempts.next.remote("method"))
        if n < 3:
            raise Flaky(f"method attempt {n}")
        return f"method succeeded on attempt {n}"


service = Service.remote()
print(ray.get(service.flaky.remote(attempts)))
print("calls before kill:", [ray.get(service.handle.remote()) for _ in range(3)])
ray.kill(service, no_restart=False)  # max_restarts=1: Ray starts it again, fresh state
print("calls after restart:", ray.get(service.handle.remote()))
ray.kill(service)  # no_restart=True: gone for good
try:
    ray.get(service.handle.remote())
except ray.exceptions.RayActorError as err:
    print("after ray.kill:", isinstance(err, ray.exceptions.ActorDiedError))
ray.shutdown()
print("OK")
