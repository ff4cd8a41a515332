"""``get_runtime_context()``: what running code can learn about itself (Ray's RuntimeContext).

Answers come from the ``ExecutionContext`` the backend sets around user code, so nothing
here costs anything until it is asked. In the driver, task and actor questions answer
``None``, as Ray's do.
"""

from __future__ import annotations

import json
import time
import warnings
from typing import Any

from actorlib import session
from actorlib.core.execution_context import ExecutionContext, current_execution
from actorlib.core.ids import ActorID, JobID, NodeID, PlacementGroupID, TaskID, id_hex
from actorlib.core.specs import ActorSpec, CodeEnv

__all__ = ["RuntimeContext", "get_runtime_context"]


def _execution() -> ExecutionContext | None:
    return current_execution.get()


def _backend_answer(client: object, question: str) -> str | None:
    """The backend's own answer to ``question`` (a method of its ``client``, such as the
    ray backend's ``ray_session_name``: Ray holds the answer there), None where the
    backend has none and actorlib answers."""
    ask = getattr(client, question, None)
    return None if ask is None else str(ask())


#: The session name this process computed, with the client it asked (a new runtime after
#: ``shutdown``/``init`` has a new name): asked once per process, not once per call.
_session_name: tuple[object, str] | None = None


class RuntimeContext:
    """What the calling code can learn about where it runs.

    The ``get_*_id()`` methods return hex strings, as Ray's do; the ``*_id`` properties
    return the id objects (``TaskID``, ``ActorID``, ...).
    """

    @property
    def namespace(self) -> str:
        ctx = _execution()
        if ctx is not None and ctx.namespace:
            return ctx.namespace
        return session.client().namespace

    @property
    def gcs_address(self) -> str | None:
        """Where other drivers join this runtime (Ray's GCS address, for ``init(address=)``
        and the state API's ``address=``): the cluster head's ``host:port`` in a driver
        connected to a cluster. None where there is nothing to join: a runtime of one
        process (the thread, process and sim backends), and inside tasks and actors, which
        reach their runtime through their driver or node rather than by an address."""
        if _execution() is not None:
            return None
        rt = session.runtime()
        return getattr(rt, "address", None) if rt is not None else None

    def get_task_id(self) -> str | None:
        """The running task's or actor call's id; None in the driver and in ``__init__``."""
        task = self.task_id
        return task.hex() if task is not None else None

    @property
    def task_id(self) -> TaskID | None:
        ctx = _execution()
        return TaskID(ctx.task_id) if ctx is not None and ctx.task_id else None

    def get_actor_id(self) -> str | None:
        """The id of the actor this code runs in; None outside actors."""
        ctx = _execution()
        return id_hex(ctx.actor_id) if ctx is not None and ctx.actor_id else None

    @property
    def actor_id(self) -> ActorID | None:
        ctx = _execution()
        return ActorID(ctx.actor_id) if ctx is not None and ctx.actor_id else None

    def get_node_id(self) -> str:
        """The node this code runs on (in the driver: the first node of the runtime)."""
        ctx = _execution()
        if ctx is not None:
            return ctx.node_id
        return session.client().nodes()[0].node_id

    @property
    def node_id(self) -> NodeID:
        return NodeID(self.get_node_id())

    def get_job_id(self) -> str:
        return self.job_id.hex()

    @property
    def job_id(self) -> JobID:
        """The driver's job: the id prefix it mints with (one per driver on a cluster).

        Inside a task or actor: the prefix of the process that submitted it, which is the
        driver's for work the driver submitted itself.
        """
        from actorlib.core.ids import prefix_of

        ctx = _execution()
        if ctx is not None:
            own = ctx.actor_id or ctx.task_id or 0
            return JobID(prefix_of(own))
        return JobID(session.client().ids.prefix)

    def get_assigned_resources(self) -> dict[str, float]:
        """The resources the running task or actor holds ({} in the driver)."""
        ctx = _execution()
        spec = ctx.spec if ctx is not None else None
        return dict(spec.resources) if spec is not None else {}

    def is_canceled(self) -> bool:
        """Whether ``cancel`` was called on the running task (False outside tasks).

        Code that catches the cancellation (``KeyboardInterrupt`` in a sync task, or
        ``asyncio.CancelledError`` in an ``async def`` task) can check it there.
        """
        ctx = _execution()
        return ctx is not None and ctx.cancelled

    @property
    def current_actor(self) -> Any:
        """A handle to the actor this code runs in (as if from ``get_actor``)."""
        ctx = _execution()
        spec = ctx.spec if ctx is not None else None
        if ctx is None or ctx.actor_id is None or not isinstance(spec, ActorSpec):
            raise RuntimeError("current_actor is only available inside an actor.")
        from actorlib.actor import handle_from_spec

        client = session.client()
        client.add_ref(ctx.actor_id)  # the handle counts one, as an unpickled handle does
        return handle_from_spec(spec, client)

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """True in an actor that was restarted (after a crash, within ``max_restarts``)."""
        ctx = _execution()
        if ctx is None or ctx.actor_id is None:
            raise RuntimeError("was_current_actor_reconstructed is only available in an actor.")
        return ctx.incarnation > 1

    def get_placement_group_id(self) -> str | None:
        """The hex id of the placement group this task or actor runs in, else None."""
        from actorlib.placement import current_group

        group = current_group()
        return None if group is None else group.id.hex()

    @property
    def should_capture_child_tasks_in_placement_group(self) -> bool:
        """Whether work this task or actor submits joins its placement group by default
        (``capture_child_tasks=True`` in its strategy)."""
        from actorlib.placement import PlacementGroupStrategy

        ctx = _execution()
        strategy = ctx.spec.scheduling_strategy if ctx is not None and ctx.spec else None
        return isinstance(strategy, PlacementGroupStrategy) and strategy.capture_child_tasks

    @property
    def current_placement_group_id(self) -> PlacementGroupID:
        """The placement group this task or actor runs in; the nil id (``is_nil()``) when
        there is none, in the driver too, as Ray's."""
        from actorlib.placement import current_group

        group = current_group()
        return PlacementGroupID.nil() if group is None else group.id

    def get_temp_dir(self) -> str:
        """The directory where actorlib keeps its files on the node this code runs on
        (Ray's ``/tmp/ray``): ``$XDG_RUNTIME_DIR/actorlib`` where that is private to the
        user, else ``$TMPDIR/actorlib-<uid>``; drivers' state sockets, worker stacks and
        ``actorlib start``'s sessions live under it. On the ray backend, Ray's.

        Starts the default runtime on first use, as Ray's.
        """
        answer = _backend_answer(session.client(), "ray_temp_dir")
        return session.temp_dir() if answer is None else answer

    def get_session_name(self) -> str:
        """The name of the runtime this code belongs to, the same in its driver and every
        task and actor (Ray's ``session_<date>_<time>_<microseconds>_<pid>``): when its
        first driver started, and that driver's pid. A cluster names itself after the
        oldest driver it still lists (``list_jobs``: all of them until 1,000 have ended).
        On the ray backend, Ray's session name.

        The time is UTC, so that every process names it alike whatever its time zone
        (a node's, a driver's ``TZ``). Starts the default runtime on first use, as Ray's.
        """
        global _session_name
        client = session.client()  # starts the default runtime, as Ray's does
        answer = _backend_answer(client, "ray_session_name")
        if answer is not None:
            return answer
        cached = _session_name
        if cached is not None and cached[0] is client:
            return cached[1]
        jobs = client.state_rows("jobs")
        if not jobs:  # every core lists its drivers, ended ones too: never in practice
            raise RuntimeError("Session name is not available: the runtime lists no job.")
        first = jobs[0]  # oldest first
        started_ms = int(first["start_time"])
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.gmtime(started_ms / 1000))
        name = f"session_{stamp}_{started_ms % 1000 * 1000:06d}_{first['driver_info']['pid']}"
        _session_name = (client, name)
        return name

    def get_worker_id(self) -> str:
        """The hex id of the process this code runs in, as ``list_workers()`` shows it (on
        the thread and sim backends, which run everything in the driver: the driver's)."""
        return id_hex(session.client().ids.prefix)

    def get_actor_name(self) -> str | None:
        """The running actor's name ("" for an unnamed one); None outside actors."""
        ctx = _execution()
        spec = ctx.spec if ctx is not None else None
        if ctx is None or ctx.actor_id is None or not isinstance(spec, ActorSpec):
            return None
        return spec.name or ""

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        """The accelerators the running task or actor holds, by kind, as id strings (Ray's
        form; actorlib schedules GPUs only): ``{"GPU": ["0"]}``, empty lists in the driver."""
        ctx = _execution()
        return {"GPU": [str(i) for i in ctx.gpu_ids] if ctx is not None else []}

    def get_resource_ids(self) -> dict[str, list[str]]:
        """Deprecated (as in Ray, with the same ``DeprecationWarning``): use
        :meth:`get_accelerator_ids`, which this returns."""
        warnings.warn(
            "get_resource_ids() is deprecated; use get_accelerator_ids() instead",
            DeprecationWarning, stacklevel=2,
        )
        return self.get_accelerator_ids()

    def get_node_labels(self) -> dict[str, str]:
        """The labels of the node this code runs on (``init(labels=)``, a node's
        ``--labels``)."""
        node_id = self.get_node_id()
        for node in session.client().nodes():
            if node.node_id == node_id:
                return dict(node.labels)
        return {}

    def get_task_name(self) -> str | None:
        """The running task's name (its ``name`` option, else its function's name), or
        ``Class.method`` in an actor call, as Ray's; None in the driver."""
        ctx = _execution()
        return None if ctx is None else ctx.task_name()

    def get_task_function_name(self) -> str | None:
        """The running code's qualified name, ``module.function`` or
        ``module.Class.method``, as Ray's; None in the driver."""
        ctx = _execution()
        return None if ctx is None else ctx.task_function_name()

    @property
    def runtime_env(self) -> dict[str, Any]:
        """The ``runtime_env`` this code runs with: in a task or actor, the job's and its
        own merged, as the worker received them (``env_vars``; ``working_dir`` and
        ``py_modules`` as the ``pkg://<sha256>`` packages shipped); in the driver, the
        job's. Empty when there is none."""
        ctx = _execution()
        spec = ctx.spec if ctx is not None else None
        if spec is not None:
            return _env_dict(spec.env_vars, spec.code_env)
        return _env_dict(session.job_env(), session.job_code_env())

    def get_runtime_env_string(self) -> str:
        """:attr:`runtime_env` as a JSON string (Ray's form)."""
        return json.dumps(self.runtime_env, sort_keys=True)

    def get(self) -> dict[str, Any]:
        """Ray's older dict form of the context."""
        out: dict[str, Any] = {
            "job_id": self.job_id, "node_id": self.node_id, "namespace": self.namespace,
        }
        if self.task_id is not None:
            out["task_id"] = self.task_id
        if self.actor_id is not None:
            out["actor_id"] = self.actor_id
        return out


def _env_dict(env_vars: dict[str, str] | None, code_env: CodeEnv | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if env_vars:
        out["env_vars"] = dict(env_vars)
    if code_env is not None and code_env.working_dir is not None:
        out["working_dir"] = f"pkg://{code_env.working_dir.hash}"
    if code_env is not None and code_env.py_modules:
        out["py_modules"] = [f"pkg://{p.hash}" for p in code_env.py_modules]
    return out


def get_runtime_context() -> RuntimeContext:
    return RuntimeContext()
