"""Ray API: runtime_env env_vars for the job, a task and an actor."""

import os

import actorlib as ray

ray.init(num_cpus=2, runtime_env={"env_vars": {"JOB_LEVEL": "job"}})


@ray.remote
def read(name):
    return os.environ.get(name)


@ray.remote(runtime_env={"env_vars": {"ACTOR_LEVEL": "actor"}})
class Reader:
    def read(self, name):
        return os.environ.get(name)


assert ray.get(read.remote("JOB_LEVEL")) == "job"
task = read.options(runtime_env={
    "env_vars": {"TASK_LEVEL": "task"}, "config": {"setup_timeout_seconds": 60}})
assert ray.get(task.remote("TASK_LEVEL")) == "task"
assert ray.get(task.remote("JOB_LEVEL")) == "job"  # the job's env merged in
reader = Reader.remote()
assert ray.get([reader.read.remote("ACTOR_LEVEL"), reader.read.remote("JOB_LEVEL")]) == [
    "actor", "job"]
assert ray.get_runtime_context().runtime_env["env_vars"] == {"JOB_LEVEL": "job"}
ray.shutdown()
print("OK")
