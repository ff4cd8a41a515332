"""Ray API: ray.get_runtime_context() in the driver, a task and an actor."""

import actorlib as ray

info = ray.init(num_cpus=2, namespace="ctx-demo")
ctx = ray.get_runtime_context()
job_id = ctx.get_job_id()
assert isinstance(job_id, str) and job_id
assert ctx.get_task_id() is None and ctx.get_actor_id() is None
assert ctx.namespace == "ctx-demo"
# The address other drivers join at: a cluster head's, None for a one-process runtime.
assert ctx.gcs_address == info["gcs_address"] == info["address"], ctx.gcs_address
node_id = ctx.get_node_id()
assert node_id in [n["NodeID"] for n in ray.nodes()]


@ray.remote
def task_info():
    c = ray.get_runtime_context()
    return c.get_task_id(), c.get_job_id(), c.get_node_id(), c.get_assigned_resources()


@ray.remote(num_cpus=1)
class Actor:
    def info(self):
        c = ray.get_runtime_context()
        return c.get_actor_id(), c.get_actor_name(), c.get_task_name()

    def me(self):
        return ray.get_runtime_context().current_actor


task_id, task_job, task_node, resources = ray.get(task_info.remote())
assert task_id and task_job == job_id and task_node == node_id
assert resources == {"CPU": 1.0}, resources
actor = Actor.options(name="ctx-actor").remote()
actor_id, name, task_name = ray.get(actor.info.remote())
assert actor_id == actor._actor_id.hex()
assert name == "ctx-actor" and task_name == "Actor.info", (name, task_name)
same = ray.get(actor.me.remote())
assert ray.get(same.info.remote())[0] == actor_id
ray.shutdown()
print("OK")
