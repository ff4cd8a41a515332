"""Ray's "Terminating actors" (``ray.actor.exit_actor()`` from inside, right after a bare
``import ray``) and "Configuring logging" (``ray.init(logging_config=ray.LoggingConfig(...))``
with JSON lines from a task), plus Ray options seen in Ray programs that change nothing
here (``enable_task_events``). An actor that ended itself leaves no "Unhandled error"
behind for the calls nobody read, as on Ray."""

import contextlib
import io
import json
import logging

import actorlib as ray

err = io.StringIO()
with contextlib.redirect_stderr(err):
    ray.init(num_cpus=2, logging_config=ray.LoggingConfig(
        encoding="JSON", log_level="INFO", additional_log_standard_attrs=["name"]))


@ray.remote
class Actor:
    def exit(self):
        ray.actor.exit_actor()

    def ping(self):
        return "pong"


@ray.remote(enable_task_events=False)
def work(x):
    logging.getLogger("work").info("working on %d", x)
    return x * 2


with contextlib.redirect_stderr(err):
    actor = Actor.remote()
    assert ray.get(actor.ping.remote()) == "pong"
    actor.exit.remote()  # its own result is an ActorDiedError nobody reads
    try:
        ray.get(actor.ping.remote())
    except ray.exceptions.RayActorError:
        pass
    else:
        raise AssertionError("the actor still answered after exit_actor()")
    assert ray.get(work.remote(21)) == 42
    ray.shutdown()

records = [json.loads(line[line.index("{"):]) for line in err.getvalue().splitlines()
           if "{" in line]
(task,) = [r for r in records if r.get("message") == "working on 21"]
assert task["name"] == "work" and task["task_name"] == "work", task
assert task["task_func_name"].endswith("work") and task["task_id"], task
assert "Unhandled error" not in err.getvalue(), err.getvalue()
print("OK")
