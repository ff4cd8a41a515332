"""Ray state API: list and summarize tasks and actors, and read a worker's log with get_log
(also following it as it grows)."""

import tempfile
import time

import actorlib as ray
from actorlib.util.state import get_log, list_actors, list_logs, list_tasks, summarize_tasks

# Ray always keeps worker logs; a local actorlib runtime keeps them where log_dir says.
log_dir = tempfile.TemporaryDirectory()
ray.init(num_cpus=2, log_dir=log_dir.name)


@ray.remote
def hello(i):
    print(f"hello from task {i}")
    return i


@ray.remote
class Talker:
    def say(self, text):
        print(text, flush=True)
        return ray.get_runtime_context().get_actor_id()


assert ray.get([hello.remote(i) for i in range(3)]) == [0, 1, 2]
tasks = list_tasks(filters=[("name", "=", "hello")])
assert len(tasks) == 3 and all(t.state == "FINISHED" for t in tasks), tasks
assert summarize_tasks()["cluster"]["summary"]["hello"]["state_counts"]["FINISHED"] == 3
talker = Talker.remote()
actor_id = ray.get(talker.say.remote("first line"))
assert any(a.actor_id == actor_id and a.state == "ALIVE" for a in list_actors())
for _ in range(300):  # the actor's process and its log line are recorded as they come
    try:
        if any("first line" in line for line in get_log(actor_id=actor_id, tail=100)):
            break
    except LookupError:
        pass
    time.sleep(0.1)
else:
    raise AssertionError("the actor's line never reached its log")
assert list_logs()["worker"]

followed = get_log(actor_id=actor_id, follow=True, tail=100)
for line in followed:  # the old lines first, then new ones as the actor prints them
    if "first line" in line:
        ray.get(talker.say.remote("second line"))
    if "second line" in line:
        break
followed.close()
ray.shutdown()
log_dir.cleanup()
print("OK")
