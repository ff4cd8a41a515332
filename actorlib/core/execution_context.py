"""What user code running inside a task or actor can ask about itself.

A backend sets :data:`current_execution` around user code; the API reads it (who is
calling, for actor ordering; GPU ids; the runtime context; whether a cancel arrived).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass

from actorlib.core.specs import ActorSpec, TaskSpec


@dataclass(slots=True)
class ExecutionContext:
    """What user code running inside a task or actor can ask about itself."""

    node_id: str
    task_id: int | None = None  # the running task, or the actor call (ids of both kinds)
    actor_id: int | None = None
    gpu_ids: tuple[int, ...] = ()
    namespace: str = ""  # the job's namespace, where it differs from the process's
    # Set by ``cancel``; ``wakeup`` is set while the task blocks in ``get``, so a cancel
    # can end that wait (a thread blocked in a lock never sees an async exception).
    cancelled: bool = False
    wakeup: Callable[[], None] | None = None
    # What ``get_runtime_context()`` reports: the task's or actor's spec (its resources, the
    # actor's class and methods for ``current_actor``) and the actor's incarnation (1 first).
    spec: TaskSpec | ActorSpec | None = None
    incarnation: int = 0
    # In an actor: the method this call runs ("" in the constructor), for the task's name
    # (Ray's ``Class.method``); the function or class running, for its module.
    method: str = ""
    code: object | None = None
    # A cancel's interrupt that landed in a finalizer (a ref's ``__del__``), where Python
    # prints and drops it: the next ``get`` that would block raises it instead.
    lost_interrupt: bool = False

    def task_name(self) -> str | None:
        """The task's name (its ``name`` option, else its function's), or ``Class.method``
        in an actor call (``Class.__init__`` in the constructor), as Ray names them."""
        spec = self.spec
        if spec is None:
            return None
        if isinstance(spec, ActorSpec):
            return f"{spec.cls.name}.{self.method or '__init__'}"
        return spec.name or spec.function.name

    def task_function_name(self) -> str | None:
        """The running code's qualified name: ``module.function``, ``module.Class.method``."""
        spec = self.spec
        if spec is None:
            return None
        code = self.code
        if isinstance(spec, ActorSpec):
            qualname = spec.cls.name if code is None else _qualified(code)
            return f"{qualname}.{self.method or '__init__'}"
        return spec.function.name if code is None else _qualified(code)

    @property
    def caller_id(self) -> int:
        """Identity used to order this code's calls to actors."""
        if self.actor_id is not None:
            return self.actor_id
        return self.task_id or 0


#: Set by the backend around user code; read by the API (caller identity, GPU ids, ...).
current_execution: contextvars.ContextVar[ExecutionContext | None] = contextvars.ContextVar(
    "actorlib_execution", default=None
)
#: ``current_execution.get``, for the paths every task takes: CPython 3.11 looks the
#: method up on its slow path at each ``current_execution.get()``.
execution_now = current_execution.get


def _qualified(code: object) -> str:
    module = getattr(code, "__module__", None)
    qualname = getattr(code, "__qualname__", None) or repr(code)
    return f"{module}.{qualname}" if module else qualname
