"""Ray API: ray.cancel of a running task and of a queued one; force=True."""

import time

import actorlib as ray

ray.init(num_cpus=1)


@ray.remote
def blocking_operation():
    for _ in range(600):  # short sleeps: a cancel lands between them (see the docs)
        time.sleep(0.1)


@ray.remote
def cooperative():
    try:
        for _ in range(600):
            time.sleep(0.1)
    except KeyboardInterrupt:
        return "interrupted" if ray.get_runtime_context().is_canceled() else "?"


obj_ref = blocking_operation.remote()
queued = blocking_operation.remote()  # one CPU: this one waits in the queue
time.sleep(0.5)
ray.cancel(obj_ref)
try:
    ray.get(obj_ref)
except ray.exceptions.TaskCancelledError:
    print("Object reference was cancelled.")
else:
    raise AssertionError("not cancelled")
ray.cancel(queued)
try:
    ray.get(queued, timeout=30)
except ray.exceptions.TaskCancelledError:
    pass

forced = blocking_operation.remote()
time.sleep(0.5)
ray.cancel(forced, force=True)
try:
    ray.get(forced, timeout=30)
except (ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError) as err:
    print("forced:", type(err).__name__)

ref = cooperative.remote()
time.sleep(0.5)
ray.cancel(ref)
try:
    print(ray.get(ref, timeout=30))
except ray.exceptions.TaskCancelledError:
    pass
ray.shutdown()
print("OK")
