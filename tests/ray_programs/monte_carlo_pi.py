"""Ray example: Monte Carlo estimation of pi, with a progress actor."""

import math
import random
import time

import actorlib as ray

ray.init(num_cpus=4)


@ray.remote
class ProgressActor:
    def __init__(self, total_num_samples: int):
        self.total_num_samples = total_num_samples
        self.num_samples_completed_per_task = {}

    def report_progress(self, task_id: int, num_samples_completed: int) -> None:
        self.num_samples_completed_per_task[task_id] = num_samples_completed

    def get_progress(self) -> float:
        return sum(self.num_samples_completed_per_task.values()) / self.total_num_samples


@ray.remote
def sampling_task(num_samples: int, task_id: int, progress_actor) -> int:
    num_inside = 0
    for i in range(num_samples):
        x, y = random.uniform(-1, 1), random.uniform(-1, 1)
        if math.hypot(x, y) <= 1:
            num_inside += 1
        if (i + 1) % 1000 == 0:
            progress_actor.report_progress.remote(task_id, i + 1)
    progress_actor.report_progress.remote(task_id, num_samples)
    return num_inside


NUM_SAMPLING_TASKS = 4
NUM_SAMPLES_PER_TASK = 5000
TOTAL = NUM_SAMPLING_TASKS * NUM_SAMPLES_PER_TASK
progress_actor = ProgressActor.remote(TOTAL)
results = [sampling_task.remote(NUM_SAMPLES_PER_TASK, i, progress_actor)
           for i in range(NUM_SAMPLING_TASKS)]
num_inside = sum(ray.get(results))
pi = (num_inside * 4) / TOTAL
assert abs(pi - math.pi) < 0.1, pi
# The reports are fire-and-forget calls from the tasks: poll until the last have arrived.
for _ in range(300):
    if ray.get(progress_actor.get_progress.remote()) == 1.0:
        break
    time.sleep(0.1)
else:
    raise AssertionError("the progress never reached 100%")
ray.shutdown()
print("OK")
