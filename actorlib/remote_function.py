"""``RemoteFunction``: a function turned into a task factory by ``@remote``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, TypeVar

from actorlib import session
from actorlib.arguments import ArgCheck, mint_results, num_returns_of, pack_args
from actorlib.core import context
from actorlib.core.context import Client
from actorlib.core.execution_context import execution_now
from actorlib.core.records import require_fields
from actorlib.core.refs import ObjectRef
from actorlib.core.scheduler import infeasible_error
from actorlib.core.serialization import dumps_function
from actorlib.core.specs import DRIVER_CALLER, NO_ARGS, CodeRef, TaskSpec
from actorlib.options import TASK_OPTIONS, OwnFiles, env_vars_of, resource_request, validate
from actorlib.placement import strategy_inherited_in

P = ParamSpec("P")
R = TypeVar("R")

_new_record = object.__new__  # (see ``RemoteFunction.remote``)
#: The fields ``RemoteFunction.remote`` sets on the ``TaskSpec`` (and the ``ObjectRef``) it
#: makes without ``__init__``: a field added to the class is added there too (this fails at
#: import until it is).
_TASK_SPEC_FIELDS = (
    "task_id", "function", "args", "return_ids", "num_returns", "resources", "max_retries",
    "retry_exceptions", "scheduling_strategy", "env_vars", "name", "caller_id", "attempt",
    "namespace", "max_calls", "generator", "backpressure", "concurrency", "code_env",
)
require_fields(
    "RemoteFunction.remote",
    (TaskSpec, _TASK_SPEC_FIELDS), (ObjectRef, ("_client", "_id", "_name", "_task")),
)


class _Code:
    """The pickled function, shared by a RemoteFunction and its ``.options()`` copies."""

    __slots__ = ("blob", "check", "fn", "owner", "ref")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.blob: bytes | None = None
        self.ref: CodeRef | None = None
        self.owner: Client | None = None
        self.check = self._check_of(fn)

    @staticmethod
    def _check_of(fn: Callable[..., Any]) -> ArgCheck | None:
        """Arguments of a function's task; of a class's constructor (it is an actor's)."""
        name = getattr(fn, "__qualname__", repr(fn))
        return ArgCheck.of(fn, f"{name}.remote()")

    def get(self, client: Client) -> CodeRef:
        """Pickle once; the id comes from the runtime, unique in every process of it."""
        if self.ref is None or self.owner is not client:
            fn = self.fn
            if self.blob is None:
                self.blob = dumps_function(fn)
            self.ref = CodeRef(
                client.ids.next(), getattr(fn, "__qualname__", repr(fn)), self.blob,
                inspect.iscoroutinefunction(fn),
            )
            self.owner = client
        return self.ref

    def freeze(self) -> None:
        """Pickle now, so that a holder may drop what the function refers to (Executor)."""
        if self.blob is None:
            self.blob = dumps_function(self.fn)

    def __getstate__(self) -> dict[str, Any]:
        return {"fn": self.fn, "blob": self.blob, "ref": None, "owner": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
        self.check = self._check_of(self.fn)


def _wrap(wrapper: object, fn: object) -> None:
    """``functools.update_wrapper(wrapper, fn)``, attribute by attribute: it updates the
    wrapper's ``__dict__``, and on CPython 3.11 an instance whose ``__dict__`` was read
    reads every attribute on the slow path from then on (its specialized read misses
    each time), which cost ``remote()`` ~4,000 CPU instructions a task (callgrind)."""
    for attr in functools.WRAPPER_ASSIGNMENTS:
        try:
            value = getattr(fn, attr)
        except AttributeError:
            continue
        setattr(wrapper, attr, value)
    for key, value in getattr(fn, "__dict__", {}).items():
        setattr(wrapper, key, value)
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]


class RemoteFunction(Generic[P, R]):
    """Call ``.remote(*args)`` to run the function as a task; get an ``ObjectRef`` at once."""

    def __init__(
        self, fn: Callable[P, R] | Callable[P, Awaitable[R]], options: dict[str, Any],
        code: _Code | None = None,
    ) -> None:
        self._function = fn
        self._options = validate(options, TASK_OPTIONS, f"remote function {fn.__qualname__}")
        self._code = code or _Code(fn)
        # Derived once: .remote() is a hot path.
        self._name = self._options.get("name") or fn.__qualname__
        self._resources = resource_request(self._options, 1.0)
        # None: none given, so a parent's placement group may capture the task.
        self._strategy = self._options.get("scheduling_strategy")
        self._num_returns: int | str = num_returns_of(fn, self._options)
        self._backpressure: int = self._options.get("_generator_backpressure_num_objects", -1)
        self._max_calls: int = self._options.get("max_calls", 0)
        self._concurrency: tuple[str, int] | None = self._options.get("_concurrency")
        self._files = OwnFiles(self._options.get("runtime_env"))
        self._max_retries: int = self._options.get("max_retries", 3)
        self._retry_exceptions: Any = self._options.get("retry_exceptions", False)
        # The env_vars of the last job seen, and the job's env they were merged with.
        self._env: tuple[dict[str, str] | None, dict[str, str] | None] | None = None
        _wrap(self, fn)

    def _env_vars(self, job_env: dict[str, str] | None) -> dict[str, str] | None:
        """The task's env_vars: the job's and its own, merged once per job (shared by
        every spec, which only reads them)."""
        cached = self._env
        if cached is None or cached[0] is not job_env:
            cached = self._env = (job_env, env_vars_of(self._options, job_env))
        return cached[1]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = self._function.__qualname__
        raise TypeError(
            f"Remote function {name} cannot be called directly. Use {name}.remote(...) to "
            f"run it as a task, or {name}._function(...) to call the plain function."
        )

    def options(self, **options: Any) -> RemoteFunction[P, R]:
        """A copy with some options changed; the function is pickled only once."""
        return RemoteFunction(self._function, {**self._options, **options}, self._code)

    def remote(self, /, *args: P.args, **kwargs: P.kwargs) -> ObjectRef[R]:
        """Submit the task. Returns a ref (a list of refs if ``num_returns`` > 1).

        Arguments the function cannot take raise ``TypeError`` here, as in Ray. Type
        checkers check them against the function's signature; with the mypy plugin
        (``plugins = ["actorlib.mypy"]``) an ``ObjectRef[T]`` is accepted where a ``T`` is
        expected, as at run time. See "Typing" in docs/api.md.
        """
        own_code = self._code
        check = own_code.check
        if check is not None and (kwargs or len(args) not in check.shapes):
            check(args, kwargs)
        # The module globals that ``context.current()`` and ``session.job_env()`` return,
        # read here without their frames (every task).
        client = context._current
        if client is None:
            client = session.client()  # starts the default runtime, or says why not
        name = self._name
        resources = self._resources
        execution = execution_now()
        strategy = self._strategy
        if strategy is None:  # the driver's own tasks inherit nothing: no call for them
            strategy = "DEFAULT" if execution is None else strategy_inherited_in(execution)
        reason = client.infeasible_reason(resources, strategy)
        if reason is not None:
            raise infeasible_error(f"Cannot run task {name}: {reason}")
        files = self._files
        if files.given:
            code_env = files.code_env(session.job_code_env(), *session.env_support())
        else:  # the common case: the job's, without asking what the backend supports
            code_env = session.job_code_env()
        code = own_code.ref
        if code is None or own_code.owner is not client:
            code = own_code.get(client)
        packed = pack_args(client, args, kwargs, name) if args or kwargs else NO_ARGS
        job_env = session._job_env
        env = self._env
        env_vars = env[1] if env is not None and env[0] is job_env else self._env_vars(job_env)
        next_id = client.ids.next
        task_id = next_id()
        if self._num_returns == 1:  # the common case, without mint_results' general path
            rid = next_id()
            return_ids: tuple[int, ...] = (rid,)
            result: Any
            # ``ObjectRef(rid, client, name, task_id)``, its slots set here (as
            # ``ActorMethod.remote`` makes a call's)
            result = _new_record(ObjectRef)
            result._id = rid
            result._client = client
            result._name = name
            result._task = task_id
            count, generator = 1, ""
        else:
            return_ids, count, generator, result = mint_results(
                client, self._num_returns, name, task_id
            )
        # The spec's slots set here, without ``TaskSpec.__init__`` (a class called with an
        # ``__init__`` costs ~600 instructions more on CPython 3.11): every field, as
        # ``_TASK_SPEC_FIELDS`` checks.
        spec = _new_record(TaskSpec)
        spec.task_id = task_id
        spec.function = code
        spec.args = packed
        spec.return_ids = return_ids
        spec.num_returns = count
        spec.resources = resources
        spec.max_retries = self._max_retries
        spec.retry_exceptions = self._retry_exceptions
        spec.scheduling_strategy = strategy
        spec.env_vars = env_vars
        spec.name = name
        spec.caller_id = DRIVER_CALLER if execution is None else execution.caller_id
        spec.attempt = 0
        spec.namespace = client.namespace
        spec.max_calls = self._max_calls
        spec.generator = generator
        spec.backpressure = self._backpressure
        spec.concurrency = self._concurrency
        spec.code_env = code_env
        named = client.submit_task(spec)
        if named is not None and self._num_returns == 1:  # the backend's id for the task
            result._task = named
        return result

    def __repr__(self) -> str:
        return f"<RemoteFunction {self._function.__module__}.{self._function.__qualname__}>"
