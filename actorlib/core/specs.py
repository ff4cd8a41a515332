"""What the API hands the core: plain records describing tasks, actors and calls.

Specs are built in the caller's thread (or process) and never mutated by it afterwards;
the core owns them from submission on. Arguments are already serialized, so the caller's
objects can change freely once ``.remote()`` has returned.
"""

from __future__ import annotations

import operator
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any, TypeVar

import cloudpickle

from actorlib.core.labels import Selector
from actorlib.core.serialization import Serialized

DRIVER_CALLER = 0  # caller id of code not running inside a task or actor

_R = TypeVar("_R", bound=type)


def pickled_by_fields(cls: _R) -> _R:
    """Pickle a slotted dataclass as ``(cls, (field values...))``.

    Every message between processes is made of these records. The default pickling of a
    slotted dataclass (``copyreg`` state: a dict of slot names per object) makes frames
    twice as large and about a quarter slower to encode and decode.
    """
    names: tuple[str, ...] = cls.__slots__  # type: ignore[attr-defined]
    getter = operator.attrgetter(*names)
    if len(names) == 1:
        def __reduce__(self: Any) -> Any:
            return (cls, (getter(self),))
    else:
        def __reduce__(self: Any) -> Any:
            return (cls, getter(self))
    cls.__reduce__ = __reduce__  # type: ignore[method-assign,assignment]
    return cls


@dataclass(frozen=True, slots=True)
class NodeAffinitySchedulingStrategy:
    """Run on ``node_id``; if ``soft``, fall back to any node when that one can't host it."""

    node_id: str
    soft: bool = False


Bundle = tuple[tuple[str, float], ...]  # one bundle's resources, sorted by name


@dataclass(frozen=True, slots=True)
class PlacementGroupStrategy:
    """Run in a bundle of placement group ``group_id`` (``bundle_index`` -1: any bundle).

    Carries the group's bundles, so that a request too large for its bundle is refused
    at the call site, in any process, without asking the core. ``capture_child_tasks``:
    work submitted from inside runs in the group too, unless it names a strategy.
    """

    group_id: int
    bundles: tuple[Bundle, ...]
    bundle_index: int = -1
    capture_child_tasks: bool = False


SchedulingStrategy = Any  # "DEFAULT" | "SPREAD" | NodeAffinity... | PlacementGroupStrategy


class _Shipping(threading.local):
    known: set[int] | None = None


_shipping = _Shipping()


class shipping_to:
    """While pickling a message for one worker, send each CodeRef's blob only once.

    ``known`` is that worker's set of code ids it already holds; it is updated.
    """

    def __init__(self, known: set[int]) -> None:
        self._known = known

    def __enter__(self) -> None:
        _shipping.known = self._known

    def __exit__(self, *exc: object) -> None:
        _shipping.known = None


@dataclass(frozen=True, slots=True)
class CodeRef:
    """A function or class, pickled once and cached by ``id`` wherever it runs."""

    id: int
    name: str
    blob: bytes
    is_async: bool = False

    def __reduce__(self) -> Any:
        known = _shipping.known
        if known is not None:
            if self.id in known:
                return (CodeRef, (self.id, self.name, b"", self.is_async))
            known.add(self.id)
        return (CodeRef, (self.id, self.name, self.blob, self.is_async))


@dataclass(frozen=True)  # not slotted: interned through weak references
class Package:
    """A directory or module file of ``runtime_env``, zipped once, named by its content.

    ``hash`` (sha256 of the zip) is what a node caches the extracted files by, so the same
    contents are extracted once per node however many tasks use them. Unpickled, it is
    interned by hash: the specs of a thousand tasks a process receives share one copy.
    """

    hash: str
    blob: bytes = field(repr=False)

    def __reduce__(self) -> Any:
        return (_package, (self.hash, self.blob))


_packages: weakref.WeakValueDictionary[str, Package] = weakref.WeakValueDictionary()


def _package(hash_: str, blob: bytes) -> Package:
    package = _packages.get(hash_)
    if package is None:
        package = _packages[hash_] = Package(hash_, blob)
    return package


@dataclass(frozen=True, slots=True)
class CodeEnv:
    """``runtime_env`` ``working_dir`` and ``py_modules``: files a worker runs among.

    A worker process is dedicated to one ``CodeEnv`` (its cwd and ``sys.path`` are set at
    start), so work with different ones never shares a process.
    """

    working_dir: Package | None = None
    py_modules: tuple[Package, ...] = ()

    @property
    def key(self) -> str:
        """What tells one environment from another: the packages' hashes, in order."""
        wd = self.working_dir.hash if self.working_dir else ""
        return "/".join([wd, *(p.hash for p in self.py_modules)])


class ExceptionTypes:
    """``retry_exceptions`` as a tuple of classes that crosses processes by value.

    The classes may live in ``__main__``; pickling them once with cloudpickle keeps every
    other message on the C pickler's fast path. A copy unpickles them only when a worker
    first matches an error against them (:attr:`types`), not as the message carrying the
    spec is decoded: a class whose module does not import there (a cluster's head, a
    node without the driver's modules) must not make the whole task's message undecodable,
    which would leave its result waiting forever.
    """

    __slots__ = ("_any", "_blob", "_types")

    def __init__(self, types: tuple[type[BaseException], ...] | None,
                 blob: bytes | None = None, any_: bool | None = None):
        self._types = types  # None: not unpickled yet (``_blob`` has them)
        self._blob = blob
        self._any = bool(types) if any_ is None else any_

    @property
    def types(self) -> tuple[type[BaseException], ...]:
        """The classes (unpickled here on first use; raises if they do not load)."""
        types = self._types
        if types is None:
            assert self._blob is not None
            types = self._types = cloudpickle.loads(self._blob)
        return types

    def __reduce__(self) -> Any:
        if self._blob is None:
            self._blob = cloudpickle.dumps(self._types, protocol=5)
        return (_load_exception_types, (self._blob, self._any))

    def __bool__(self) -> bool:
        return self._any

    def __repr__(self) -> str:
        try:
            return f"ExceptionTypes({self.types!r})"
        except Exception as exc:
            return f"ExceptionTypes(<classes that do not unpickle here: {exc!r}>)"


def _load_exception_types(blob: bytes, any_: bool = True) -> ExceptionTypes:
    return ExceptionTypes(None, blob, any_)  # unpickled on first use (see ExceptionTypes)


RetryExceptions = bool | ExceptionTypes


class Dep:
    """Placeholder for a top-level ObjectRef argument, replaced by its value before running."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> Any:
        return (Dep, (self.index,))


@pickled_by_fields
@dataclass(slots=True)
class Args:
    """Serialized ``(args, kwargs)`` with top-level refs replaced by :class:`Dep` slots."""

    payload: Serialized | None  # None: no arguments at all
    deps: tuple[int, ...] = ()

    @property
    def held(self) -> tuple[int, ...]:
        """Ids these arguments keep alive: top-level refs and refs pickled inside."""
        if self.payload is None:
            return self.deps
        return self.deps + self.payload.contained


NO_ARGS = Args(None, ())


@pickled_by_fields
@dataclass(slots=True)
class TaskSpec:
    """One task as submitted: the function, its arguments and its options.

    ``RemoteFunction.remote`` makes it without ``__init__``, its fields set one by one:
    a field added is added there too (its import fails until it is)."""

    task_id: int
    function: CodeRef
    args: Args
    return_ids: tuple[int, ...]
    num_returns: int
    resources: dict[str, float]
    max_retries: int = 3
    retry_exceptions: RetryExceptions = False
    scheduling_strategy: SchedulingStrategy = "DEFAULT"
    env_vars: dict[str, str] | None = None
    name: str = ""
    caller_id: int = DRIVER_CALLER
    attempt: int = 0
    namespace: str = ""  # the submitting job's: a cluster's workers serve several jobs
    max_calls: int = 0  # a worker process retires after this many runs of the function (0: never)
    # "streaming": yields items as produced (return_ids: the stream's head, its end);
    # "dynamic": one return, the refs of all items; "": a plain function.
    generator: str = ""
    backpressure: int = -1  # streaming: unconsumed items at which the producer pauses
    # (key, limit): at most ``limit`` tasks with this key are on workers at once, across
    # the runtime, held while one waits in ``get`` (an Executor's ``max_workers``).
    concurrency: tuple[str, int] | None = None
    code_env: CodeEnv | None = None  # runtime_env working_dir / py_modules


@pickled_by_fields
@dataclass(slots=True)
class ActorSpec:
    """One actor as created: its class, constructor arguments and options."""

    actor_id: int
    cls: CodeRef
    args: Args
    resources: dict[str, float]
    method_returns: dict[str, int | str] = field(default_factory=dict)
    is_async: bool = False
    max_concurrency: int = 1
    max_restarts: int = 0
    max_task_retries: int = 0
    name: str | None = None
    namespace: str = ""
    detached: bool = False
    scheduling_strategy: SchedulingStrategy = "DEFAULT"
    env_vars: dict[str, str] | None = None
    caller_id: int = DRIVER_CALLER
    # Named groups of calls with limits of their own, and each method's group (the
    # others run in the default group, limited by max_concurrency).
    concurrency_groups: dict[str, int] | None = None
    method_groups: dict[str, str] | None = None
    code_env: CodeEnv | None = None  # runtime_env working_dir / py_modules


@pickled_by_fields
@dataclass(slots=True)
class CallSpec:
    """One actor method call.

    ``ActorMethod.remote`` and the process codec's reader set its slots themselves
    (without ``__init__``, which costs every call): a field added is added there too
    (both check at import)."""

    call_id: int
    actor_id: int
    method: str
    args: Args
    return_ids: tuple[int, ...]
    num_returns: int
    caller_id: int = DRIVER_CALLER
    max_task_retries: int | None = None  # None: the actor's own setting
    retry_exceptions: RetryExceptions = False
    attempt: int = 0
    concurrency_group: str | None = None  # this call's group, over its method's
    generator: str = ""  # as TaskSpec's
    backpressure: int = -1


@pickled_by_fields
@dataclass(slots=True)
class PlacementGroupSpec:
    """A placement group to reserve: bundles of resources, reserved all at once or not at all."""

    group_id: int
    bundles: tuple[Bundle, ...]
    strategy: str  # PACK | SPREAD | STRICT_PACK | STRICT_SPREAD
    name: str = ""
    namespace: str = ""
    detached: bool = False
    caller_id: int = DRIVER_CALLER
    # Per bundle, the labels its node must have (``bundle_label_selector``); () for none.
    bundle_selectors: tuple[Selector, ...] = ()
