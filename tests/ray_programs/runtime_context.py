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
# Ray's id classes at the top level; no placement group here.
assert ray.NodeID.from_hex(node_id).hex() == node_id and not ray.NodeID.from_hex(node_id).is_nil()
assert ctx.current_placement_group_id.is_nil() and ctx.get_placement_group_id() is None
session_name = ctx.get_session_name()
assert session_name.startswith("session_"), session_name
assert ray.util.log_once("ctx-demo") and not ray.util.log_once("ctx-demo")


@ray.remote
def get_session_name():
    return ray.get_runtime_context().get_session_name()


# The session name is the same across all processes of the runtime (Ray's docstring).
assert ray.get(get_session_name.remote()) == session_name


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
