"""Actors: ``ActorClass`` (what ``@remote`` makes of a class), ``ActorHandle``, ``method``."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar

from actorlib import session
from actorlib.actor_exit import exit_actor as exit_actor  # Ray's ray.actor.exit_actor
from actorlib.arguments import ArgCheck, caller_id, mint_results, num_returns_of, pack_args
from actorlib.core.builtin_methods import READY_METHOD, TERMINATE_METHOD
from actorlib.core.context import Client
from actorlib.core.execution_context import execution_now
from actorlib.core.ids import ActorID, id_hex
from actorlib.core.late_interrupts import finalizer
from actorlib.core.records import require_fields
from actorlib.core.refs import ObjectRef
from actorlib.core.scheduler import infeasible_error
from actorlib.core.serialization import loads_function, note_contained
from actorlib.core.specs import DRIVER_CALLER, NO_ARGS, ActorSpec, CallSpec, CodeRef
from actorlib.exceptions import PendingCallsLimitExceeded, RuntimeClosedError
from actorlib.options import (
    ACTOR_OPTIONS,
    METHOD_OPTIONS,
    OwnFiles,
    env_vars_of,
    resource_request,
    validate,
)
from actorlib.placement import inherited_strategy
from actorlib.remote_function import _Code

T = TypeVar("T")
P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])

_METHOD_OPTIONS_ATTR = "__actorlib_method_options__"


def method(**options: Any) -> Callable[[F], F]:
    """Set per-method defaults on an actor method, e.g. ``@actorlib.method(num_returns=2)``."""
    checked = validate(options, METHOD_OPTIONS, "actor method")

    def decorate(fn: F) -> F:
        setattr(fn, _METHOD_OPTIONS_ATTR, checked)
        return fn

    return decorate


def _method_table(cls: type) -> tuple[dict[str, dict[str, Any]], bool]:
    """Public methods with their options, and whether any is ``async def``."""
    table: dict[str, dict[str, Any]] = {}
    is_async = False
    for name, member in inspect.getmembers(cls, callable):
        if name.startswith("__") and name.endswith("__"):
            continue
        table[name] = dict(getattr(member, _METHOD_OPTIONS_ATTR, {}))
        if inspect.isgeneratorfunction(member) or inspect.isasyncgenfunction(member):
            table[name]["num_returns"] = num_returns_of(member, table[name])
        if inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member):
            is_async = True
    return table, is_async


def _method_checks(cls: type, names: Any) -> dict[str, ArgCheck | None]:
    """The argument check of each method, as called on an instance (without ``self``)."""
    checks: dict[str, ArgCheck | None] = {}
    for name in names:
        raw = inspect.getattr_static(cls, name, None)
        what = f"{cls.__qualname__}.{name}.remote()"
        if isinstance(raw, (staticmethod, classmethod)):
            checks[name] = ArgCheck.of(getattr(cls, name), what)  # no self to drop
        elif inspect.isfunction(raw):
            checks[name] = ArgCheck.of(raw, what, drop_first=True)
        else:
            checks[name] = None  # another kind of callable attribute: not checked
    return checks


class ActorClass(Generic[T]):
    """Call ``.remote(*args)`` to create an actor; get an ``ActorHandle`` at once."""

    def __init__(
        self, cls: type[T], options: dict[str, Any], code: _Code | None = None,
        checks: dict[str, ArgCheck | None] | None = None,
    ) -> None:
        self._cls = cls
        self._options = validate(options, ACTOR_OPTIONS, f"actor class {cls.__qualname__}")
        self._code = code or _Code(cls)
        self._files = OwnFiles(self._options.get("runtime_env"))
        self._methods, self._is_async = _method_table(cls)
        self._checks = checks if checks is not None else _method_checks(cls, self._methods)
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__doc__ = cls.__doc__
        self.__module__ = cls.__module__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        name = self._cls.__qualname__
        raise TypeError(
            f"Actor class {name} cannot be instantiated directly. Use {name}.remote(...)."
        )

    def options(self, **options: Any) -> ActorClass[T]:
        return ActorClass(self._cls, {**self._options, **options}, self._code, self._checks)

    def remote(self, /, *args: Any, **kwargs: Any) -> ActorHandle[T]:
        """Create the actor; arguments its constructor cannot take raise ``TypeError`` here."""
        check = self._code.check
        if check is not None:
            check(args, kwargs)
        opts = self._options
        client = session.client()
        name = self._cls.__qualname__
        # Like Ray: an actor holds no CPU unless it asks for some.
        resources = resource_request(opts, 0.0)
        strategy = opts.get("scheduling_strategy")
        if strategy is None:  # none given: a parent's placement group may capture it
            strategy = inherited_strategy()
        reason = client.infeasible_reason(resources, strategy)
        if reason is not None:
            raise infeasible_error(f"Cannot create actor {name}: {reason}", actor=True)
        code_env = self._files.code_env(session.job_code_env(), *session.env_support())
        code = self._code.get(client)
        packed = pack_args(client, args, kwargs, f"{name}.__init__")
        default_concurrency = 1000 if self._is_async else 1
        groups = opts.get("concurrency_groups") or None
        method_groups = {
            m: o["concurrency_group"] for m, o in self._methods.items()
            if o.get("concurrency_group")
        } or None
        if method_groups:
            unknown = sorted({g for g in method_groups.values() if g not in (groups or {})})
            if unknown:
                raise ValueError(
                    f"Actor class {name}: method(s) use concurrency group(s) "
                    f"{', '.join(map(repr, unknown))} not declared in concurrency_groups="
                    f"{groups or {}}."
                )
        spec = ActorSpec(
            actor_id=client.ids.next(),
            cls=code,
            args=packed,
            resources=resources,
            method_returns={m: o.get("num_returns", 1) for m, o in self._methods.items()},
            is_async=self._is_async,
            max_concurrency=opts.get("max_concurrency", default_concurrency),
            max_restarts=opts.get("max_restarts", 0),
            max_task_retries=opts.get("max_task_retries", 0),
            name=opts.get("name"),
            namespace=opts.get("namespace") or client.namespace,
            detached=opts.get("lifetime") == "detached",
            scheduling_strategy=strategy,
            env_vars=env_vars_of(opts, session.job_env()),
            caller_id=caller_id(),
            concurrency_groups=groups,
            method_groups=method_groups,
            code_env=code_env,
        )
        actor_id = client.create_actor(spec, bool(opts.get("get_if_exists")))
        handle: ActorHandle[T] = ActorHandle(actor_id, client, name, self._methods, self._checks)
        limit = opts.get("max_pending_calls", -1)
        if limit != -1:
            handle._pending = PendingCalls(limit)
        return handle

    def __repr__(self) -> str:
        return f"<ActorClass {self._cls.__module__}.{self._cls.__qualname__}>"

    # -- the wrapped class shows through, as in Ray ----------------------------------------

    @property
    def __ray_actor_class__(self) -> type[T]:
        """The plain class (Ray's name for it): subclass it, call its static methods."""
        return self._cls

    def __getattr__(self, name: str) -> Any:
        """Class attributes, static and class methods of the wrapped class."""
        cls = self.__dict__.get("_cls")
        if cls is None or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(name)
        try:
            return getattr(cls, name)
        except AttributeError:
            raise AttributeError(
                f"Actor class {cls.__qualname__} has no attribute {name!r}"
            ) from None

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(dir(self._cls)))

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[type, ...]:
        """``class B(A)`` with ``A`` an actor class inherits from A's plain class; make B an
        actor class with ``@remote`` in turn (Ray refuses such a subclass outright)."""
        return (self._cls,)


class ActorHandle(Generic[T]):
    """A reference to a live actor. Picklable: pass it to tasks and other actors.

    The actor lives while any handle to it lives (unless created with
    ``lifetime="detached"``); then it stops after its pending calls.
    """

    __slots__ = (
        "__weakref__", "_checks", "_class_name", "_client", "_id", "_methods", "_pending",
    )

    def __new__(
        cls, actor_id: int, client: Client | None, class_name: str,
        methods: dict[str, dict[str, Any]], checks: dict[str, ArgCheck | None] | None = None,
    ) -> ActorHandle[T]:
        # An instance of the subclass made for this set of methods (see ``_handle_class``).
        return object.__new__(_handle_class(methods) if cls is ActorHandle else cls)

    def __init__(
        self, actor_id: int, client: Client | None, class_name: str,
        methods: dict[str, dict[str, Any]], checks: dict[str, ArgCheck | None] | None = None,
    ) -> None:
        """Wrap an actor id whose handle count the core has already raised for this one.

        ``checks``: each method's argument check; None (a handle from ``get_actor``, whose
        class is not at hand) checks nothing at ``.remote()``.
        """
        self._id = actor_id
        self._client = client
        self._class_name = class_name
        self._methods = methods
        self._checks = checks
        self._pending: PendingCalls | None = None  # max_pending_calls on this handle

    def __getattr__(self, name: str) -> ActorMethod[..., Any]:
        # Typed per method (``ActorMethod[[by: int], int]``) by the mypy plugin. Reached
        # only for names the handle's class does not bind (see ``_handle_class``).
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        methods = object.__getattribute__(self, "_methods")
        if name not in methods:
            raise AttributeError(
                f"Actor {self._class_name} has no method {name!r}. "
                f"Methods: {', '.join(sorted(methods)) or '(none)'}."
            )
        return self._actorlib_method(name)

    def _actorlib_method(self, name: str) -> ActorMethod[..., Any]:
        """``handle.name`` for the actor's method ``name`` (a name unlikely to be a method's)."""
        checks = self._checks
        return ActorMethod(self, name, self._methods[name], checks.get(name) if checks else None)

    @property
    def __ray_ready__(self) -> ActorMethod[[], bool]:
        """Ray's readiness call: ``get(handle.__ray_ready__.remote())`` is True once the
        constructor has run, and raises its error if it failed. Queued as any call
        (after the calls this handle made before it); runs no code of the class unless
        the class defines ``__ray_ready__`` itself."""
        return ActorMethod(self, READY_METHOD, {}, None)

    @property
    def __ray_terminate__(self) -> ActorMethod[[], None]:
        """Ray's way to end an actor after the calls sent before: queued as any call, it
        runs ``exit_actor()`` in the actor (so it, and every call still queued behind
        it, fail with ``ActorDiedError``; no restart)."""
        return ActorMethod(self, TERMINATE_METHOD, {}, None)

    @property
    def _actor_id(self) -> ActorID:
        """Ray's spelling (``handle._actor_id.hex()``); :attr:`actor_id` is the public one."""
        return ActorID(self._id)

    @property
    def actor_id(self) -> ActorID:
        """This actor's id (``.hex()`` gives the string ``get_actor_id()`` returns).

        If the actor's class has a method called ``actor_id``, that method wins.
        """
        methods = self._methods
        if "actor_id" in methods:
            return ActorMethod(self, "actor_id", methods["actor_id"])  # type: ignore[return-value]
        return ActorID(self._id)

    def __repr__(self) -> str:
        return f"ActorHandle({self._class_name}, {id_hex(self._id)})"

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._id == self._id

    @finalizer
    def __del__(self) -> None:
        client = self._client
        if client is not None:
            try:
                client.drop_ref(self._id)
            except Exception:  # interpreter teardown
                pass

    def __reduce__(self) -> Any:
        note_contained(self._id)
        return (_rebuild_handle, (self._id, self._class_name, self._methods, self._checks))


class _BoundMethod:
    """``handle.name`` for one of the actor's methods, found on the handle's class.

    ``__getattr__`` alone would do, but Python reaches it only after the normal lookup
    failed, and that failure makes (and drops) an ``AttributeError`` with its message on
    every ``handle.method.remote()``: several times the cost of this lookup.
    """

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __get__(self, handle: ActorHandle[Any] | None, owner: type | None = None) -> Any:
        if handle is None:
            return self
        # ``handle._actorlib_method(name)``, without its frame (every call comes here), and
        # without ``ActorMethod.__init__``'s: a class called with an ``__init__`` costs
        # about 600 instructions more than its slots set here (CPython 3.11).
        name = self._name
        checks = handle._checks
        method = _new_method(ActorMethod)
        method._handle = handle
        method._name = name
        method._options = handle._methods[name]
        method._check = checks.get(name) if checks else None
        return method


# One handle class per set of method names (each actor class's, as a rule): bounded by the
# distinct classes a program uses.
_handle_classes: dict[frozenset[str], type[ActorHandle[Any]]] = {}


def _handle_class(methods: dict[str, dict[str, Any]]) -> type[ActorHandle[Any]]:
    """The subclass of :class:`ActorHandle` that binds ``methods`` as class attributes.

    Names the handle has an attribute of its own for (``actor_id``, ``_id``, ...) and
    dunder names are left to the handle, as with ``__getattr__``.
    """
    key = frozenset(methods)
    cls = _handle_classes.get(key)
    if cls is None:
        bound: dict[str, Any] = {
            name: _BoundMethod(name) for name in key
            if not (name.startswith("__") and name.endswith("__"))
            and not hasattr(ActorHandle, name)
        }
        cls = _handle_classes[key] = type(
            "ActorHandle", (ActorHandle,), {"__slots__": (), "__module__": __name__,
                                            "__qualname__": "ActorHandle", **bound}
        )
    return cls


def _rebuild_handle(
    actor_id: int, class_name: str, methods: dict[str, dict[str, Any]],
    checks: dict[str, ArgCheck | None] | None = None,
) -> ActorHandle[Any]:
    from actorlib.core import context

    client = context.current()
    if client is not None and not client.closed:
        client.add_ref(actor_id)
        return ActorHandle(actor_id, client, class_name, methods, checks)
    return ActorHandle(actor_id, None, class_name, methods, checks)


def handle_from_spec(spec: ActorSpec, client: Client) -> ActorHandle[Any]:
    """A handle for an actor found by name (the core already counted it).

    Its methods check their arguments at ``.remote()`` like those of a handle from
    ``ActorClass.remote()``, when the actor's class can be loaded here.
    """
    methods = {m: {"num_returns": n} for m, n in spec.method_returns.items()}
    return ActorHandle(spec.actor_id, client, spec.cls.name, methods,
                       _checks_of(spec.cls, methods))


# By the class's pickled bytes: code ids are only unique within the driver that made them.
_found_checks: dict[bytes, dict[str, ArgCheck | None] | None] = {}


def _checks_of(code: CodeRef, methods: dict[str, Any]) -> dict[str, ArgCheck | None] | None:
    """The argument checks of a named actor's class, unpickled once per class.

    None (nothing checked at ``.remote()``; the call fails in the actor as before) when
    the class cannot be loaded in this process, e.g. a module only its workers have.
    """
    if not code.blob:
        return None
    if code.blob in _found_checks:
        return _found_checks[code.blob]
    checks: dict[str, ArgCheck | None] | None = None
    try:
        cls = loads_function(code.blob)
        checks = _method_checks(cls, methods) if isinstance(cls, type) else None
    except Exception:
        checks = None
    _found_checks[code.blob] = checks
    return checks


class PendingCalls:
    """``max_pending_calls``: the calls made through one handle and not yet finished,
    forgotten as each first return is ready (a watch, only on such handles).

    A call takes its place before it is submitted (:meth:`reserve`) and under a lock, so
    threads calling through one handle at once never get past the limit together.
    """

    __slots__ = ("_lock", "_reserved", "ids", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.ids: set[int] = set()
        self._reserved = 0  # places taken by calls still being submitted
        self._lock = threading.RLock()  # a watch may run its callback on this thread

    def reserve(self, client: Client, label: str) -> None:
        with self._lock:
            ids = self.ids
            if len(ids) + self._reserved >= self.limit and ids:
                # Ready a moment ago, its watch not yet run: a caller that just read the
                # results must not be refused.
                ids.difference_update(client.ready_values(list(ids), len(ids), False))
            if len(ids) + self._reserved >= self.limit:
                raise PendingCallsLimitExceeded(
                    f"{label}: this actor handle already has {len(ids) + self._reserved} "
                    f"calls not yet finished (max_pending_calls={self.limit}); wait for "
                    "some results first"
                )
            self._reserved += 1

    def settle(self, client: Client, id_: int | None) -> None:
        """The reserved place goes to the call's first return ``id_``; None gives it back
        (submission failed, or ``num_returns=0``: nothing to wait for)."""
        with self._lock:
            self._reserved -= 1
            if id_ is not None:
                self.ids.add(id_)
        if id_ is not None:
            try:
                client.watch([id_], self._finished, reads=False)
            except BaseException:  # a client closing meanwhile: the place must not stay
                self._finished(id_, None)
                raise

    def _finished(self, id_: int, value: object) -> None:
        with self._lock:
            self.ids.discard(id_)


_new_method = object.__new__  # (see ``_BoundMethod.__get__``; refs and specs are made so too)
#: The fields ``ActorMethod.remote`` sets on the ``CallSpec`` it makes without
#: ``__init__``: a field added there is added here too (this fails at import until it is).
_CALL_SPEC_FIELDS = (
    "call_id", "actor_id", "method", "args", "return_ids", "num_returns", "caller_id",
    "max_task_retries", "retry_exceptions", "attempt", "concurrency_group", "generator",
    "backpressure",
)
require_fields("ActorMethod.remote", (CallSpec, _CALL_SPEC_FIELDS))


class ActorMethod(Generic[P, R]):
    """``handle.method``: call ``.remote(*args)`` to queue a call on the actor.

    ``P`` and ``R`` are the method's parameters and result (for type checkers only).
    """

    __slots__ = ("_check", "_handle", "_name", "_options")

    def __init__(
        self, handle: ActorHandle[Any], name: str, options: dict[str, Any],
        check: ArgCheck | None = None,
    ) -> None:
        self._handle = handle
        self._name = name
        self._options = options
        self._check = check

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actor methods cannot be called directly. Use .{self._name}.remote(...)."
        )

    def options(self, **options: Any) -> ActorMethod[P, R]:
        checked = validate(options, METHOD_OPTIONS, f"actor method {self._name}")
        return ActorMethod(self._handle, self._name, {**self._options, **checked}, self._check)

    def _group_override(self, opts: dict[str, Any]) -> str | None:
        """A group set with ``.options()`` for this call; the method's own the actor knows."""
        group = opts.get("concurrency_group")
        if group is None or group == self._handle._methods.get(self._name, {}).get(
            "concurrency_group"
        ):
            return None
        return str(group)

    def remote(self, /, *args: P.args, **kwargs: P.kwargs) -> ObjectRef[R]:
        """Queue the call; arguments the method cannot take raise ``TypeError`` here."""
        check = self._check
        if check is not None and (kwargs or len(args) not in check.shapes):
            check(args, kwargs)
        handle = self._handle
        client = handle._client
        if client is None or client.closed:
            raise RuntimeClosedError(
                f"{handle!r} belongs to an actorlib runtime that was shut down."
            )
        label = f"{handle._class_name}.{self._name}"
        # One frame for the call (no helper for the submission): ``max_pending_calls``'
        # place, when the handle has a limit, is taken before and settled in ``finally``,
        # which costs nothing on the way through (3.11's exceptions cost only if raised).
        pending = handle._pending
        if pending is not None:
            pending.reserve(client, label)
        first: int | None = None
        try:
            opts = self._options
            packed = pack_args(client, args, kwargs, label) if args or kwargs else NO_ARGS
            next_id = client.ids.next
            call_id = next_id()
            num_returns = opts.get("num_returns", 1)
            if num_returns == 1:  # the common case, without mint_results' general path
                first = next_id()
                return_ids: tuple[int, ...] = (first,)
                result: Any
                # ``ObjectRef(first, client, label, call_id)``, its slots set here (see
                # ``_BoundMethod.__get__``)
                result = _new_method(ObjectRef)
                result._id = first
                result._client = client
                result._name = label
                result._task = call_id
                count, generator = 1, ""
            else:
                return_ids, count, generator, result = mint_results(
                    client, num_returns, label, call_id
                )
                first = return_ids[0] if return_ids else None
            execution = execution_now()
            # The spec's slots set here, without ``CallSpec.__init__``: every field, as
            # ``_CALL_SPEC_FIELDS`` checks.
            spec = _new_method(CallSpec)
            spec.call_id = call_id
            spec.actor_id = handle._id
            spec.method = self._name
            spec.args = packed
            spec.return_ids = return_ids
            spec.num_returns = count
            spec.caller_id = DRIVER_CALLER if execution is None else execution.caller_id
            spec.max_task_retries = opts.get("max_task_retries")
            spec.retry_exceptions = opts.get("retry_exceptions", False)
            spec.attempt = 0
            spec.concurrency_group = (
                None if "concurrency_group" not in opts else self._group_override(opts)
            )
            spec.generator = generator
            spec.backpressure = opts.get("_generator_backpressure_num_objects", -1)
            named = client.submit_call(spec)
        except BaseException:
            first = None  # nothing was submitted: the place goes back
            raise
        finally:
            if pending is not None:
                pending.settle(client, first)
        if named is not None and num_returns == 1:  # the backend's id for the call
            result._task = named
        return result
