"""Ray's ray.wait and ray.get in detail: num_returns, timeout (0 polls), fetch_local=False,
the ready list in input order, what wait refuses (duplicates, num_returns too large);
ray.get(timeout=) raising GetTimeoutError (a TimeoutError) and the value still coming
later; a failed ref in a list; RayTaskError.as_instanceof_cause."""

import time

import actorlib as ray

ray.init(num_cpus=4)


@ray.remote
def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


@ray.remote
def boom():
    raise KeyError("missing")


fast = [sleep_then.remote(0, i) for i in range(3)]
ray.get(fast)  # all done
slow = sleep_then.remote(30, "slow")

ready, not_ready = ray.wait([*fast, slow], num_returns=3, timeout=10)
print("ready in input order:", ready == fast, "not ready:", not_ready == [slow])
ready, not_ready = ray.wait([slow, *fast], num_returns=4, timeout=0)  # poll
print("poll:", len(ready), len(not_ready), ready == fast)
ready, _ = ray.wait(fast, num_returns=len(fast), fetch_local=False)
print("fetch_local=False:", len(ready))
ready, not_ready = ray.wait([slow], timeout=0.1)
print("timeout, nothing ready:", ready, len(not_ready))

for bad in ([fast[0], fast[0]], fast[:1]):
    try:
        ray.wait(bad, num_returns=2)
    except ValueError:
        print("wait refused", "duplicates" if len(bad) == 2 else "num_returns > len")

try:
    ray.get(slow, timeout=0)
except ray.exceptions.GetTimeoutError as err:
    print("get(timeout=0):", isinstance(err, TimeoutError))
try:
    ray.get(slow, timeout=0.2)
except TimeoutError:
    print("get(timeout=0.2): TimeoutError")
ray.cancel(slow)

try:
    ray.get([fast[0], boom.remote(), fast[1]])
except KeyError as err:
    print("a failed ref in the list:", type(err.as_instanceof_cause()).__name__ != "KeyError",
          isinstance(err, ray.exceptions.RayTaskError))
    print("cause:", repr(err.cause))
ray.shutdown()
print("OK")
