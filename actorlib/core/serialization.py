"""Values to bytes and back: pickle protocol 5 with out-of-band buffers.

Large buffers (numpy arrays, bytes-like objects) stay out of the pickle stream so that a
store can place them once in memory it owns (shared memory, on the process backend) and
readers can map them without copying. Refs and actor handles pickled inside a value are
recorded in ``contained``: the core keeps them alive for as long as the serialized value
lives, which closes the gap between "the sender dropped its ref" and "the receiver
unpickled its copy".

cloudpickle handles functions, lambdas and classes defined in ``__main__``; plain values
take the C pickler's fast path.
"""

from __future__ import annotations

import collections
import io
import linecache
import mmap
import os
import pickle
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import cloudpickle

from actorlib.exceptions import SerializationError, TaskError, UnloadableCause

# Buffers at least this large leave the pickle stream (and may go to shared memory).
OUT_OF_BAND_THRESHOLD = 64 * 1024

# A set: ``type(x) in`` a tuple compares with each type in turn (a rich comparison per
# miss), several times the cost of one hash lookup, on every value serialized.
PLAIN_SCALARS = frozenset((int, float, str, bytes, bool, type(None), complex))


@dataclass(slots=True)
class Serialized:
    """A pickled value: the stream, its out-of-band buffers, and the ids it holds.

    ``locations[i]``, when set, is ``(path, size)`` of a file (in shared memory or on disk)
    holding ``buffers[i]``. Pickling a ``Serialized`` sends such buffers by location
    only; unpickling maps the file read-only, so large buffers cross processes without a
    copy.
    """

    data: bytes
    # ``()`` when there is none (nearly every value): an empty list per value was one
    # more object for the cyclic collector to track and walk, per call in flight and per
    # result held; the empty tuple is one object, never tracked.
    buffers: list[Any] | tuple[()] = ()
    contained: tuple[int, ...] = ()
    is_error: bool = False
    locations: list[tuple[str, int] | None] | None = None
    # An error delivered to a caller (by ``get``/``await``, or to a worker that asked):
    # one nobody read is reported when it is dropped. Local to this copy; never pickled.
    read: bool = False

    @property
    def nbytes(self) -> int:
        return len(self.data) + sum(memoryview(b).nbytes for b in self.buffers)

    def __reduce__(self) -> Any:
        locations = self.locations
        buffers: list[Any] | tuple[()]
        if not self.buffers:
            buffers = ()
        elif locations is None:
            buffers = [bytes(b) if not isinstance(b, bytes) else b for b in self.buffers]
        else:
            buffers = [
                None if loc is not None else (b if isinstance(b, bytes) else bytes(b))
                for b, loc in zip(self.buffers, locations, strict=True)
            ]
        return (_rebuild_serialized, (self.data, buffers, self.contained, self.is_error, locations))


#: Stands for a value a backend did not read where only which objects are ready counts
#: (``fetch(..., reads=False)``: a ``wait``). Never to be unpickled (it holds nothing).
UNREAD = Serialized(b"")


def map_readonly(path: str, size: int) -> memoryview:
    """Map a buffer file read-only; the mapping lives as long as views of it do."""
    if size == 0:
        return memoryview(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        mapped = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    return memoryview(mapped)


_buffer_mapper: Callable[[str, int], Any] = map_readonly


def set_buffer_mapper(mapper: Callable[[str, int], Any]) -> None:
    """How this process maps located buffers (a store may follow spilled files)."""
    global _buffer_mapper
    _buffer_mapper = mapper


def _rebuild_serialized(
    data: bytes, buffers: list[Any], contained: tuple[int, ...], is_error: bool,
    locations: list[tuple[str, int] | None] | None,
) -> Serialized:
    if locations is not None:
        buffers = [
            _map_or_defer(loc) if loc is not None else b
            for b, loc in zip(buffers, locations, strict=True)
        ]
    return Serialized(data, buffers, contained, is_error, locations)


def _map_or_defer(location: tuple[str, int]) -> Any:
    """Map a located buffer now, or leave its mapping to whoever deserializes the value.

    A message is decoded on a connection's reader, possibly before this process's store
    installs its mapper (a worker's first read can hold both its set-up and a task), and
    a file may move meanwhile (spilled). Raising here would drop the whole message, and
    the task in it would never run: a wedge. ``deserialize`` retries with the mapper then
    installed, and only then is the error the value's.
    """
    try:
        return _buffer_mapper(*location)
    except Exception as exc:
        return Unavailable(exc, location)


class _Collector(threading.local):
    ids: list[int] | None = None
    files: set[str] | None = None  # file names of code pickled by value (dumps_function)


_collector = _Collector()


def note_contained(id_: int) -> None:
    """Called by a ref or handle being pickled, to be recorded in ``contained``."""
    ids = _collector.ids
    if ids is not None:
        ids.append(id_)


def _is_plain(value: Any, depth: int = 0) -> bool:
    """True for values the C pickler handles exactly as cloudpickle would."""
    t = type(value)
    if t in PLAIN_SCALARS or t is range:  # a range: a chunk of ``Pool.map`` over one
        return True
    if depth > 2:
        return False
    if t is tuple or t is list:
        return len(value) <= 32 and all(_is_plain(v, depth + 1) for v in value)
    if t is dict:
        return len(value) <= 32 and all(
            type(k) in PLAIN_SCALARS and _is_plain(v, depth + 1) for k, v in value.items()
        )
    return False


def serialize(value: Any, *, is_error: bool = False, label: str = "value") -> Serialized:
    """Pickle ``value``; raise :class:`SerializationError` naming what could not be pickled."""
    if type(value) in PLAIN_SCALARS or _is_plain(value):
        # (protocol 5, positional: a keyword into a C function is parsed by name)
        return Serialized(pickle.dumps(value, 5), (), (), is_error)
    # Apart: its closure's cell would be made on every call, the plain values' too.
    return _serialize_any(value, is_error, label)


def _serialize_any(value: Any, is_error: bool, label: str) -> Serialized:
    """:func:`serialize` of a value that may hold buffers and refs."""
    buffers: list[Any] = []

    def keep(buf: pickle.PickleBuffer) -> bool:
        if buf.raw().nbytes >= OUT_OF_BAND_THRESHOLD:
            buffers.append(buf)
            return False
        return True

    outer = _collector.ids
    ids: list[int] = []
    _collector.ids = ids
    try:
        data = _dumps(value, keep)
    except Exception as exc:
        raise SerializationError(describe_unpicklable(value, exc, label)) from exc
    finally:
        _collector.ids = outer
    return Serialized(data, [b.raw() for b in buffers] if buffers else (), tuple(ids), is_error)


class Unavailable:
    """Stands in for a located buffer that could not be mapped (its node is gone).

    Unpickling a message must not fail for that: the task or ``get`` that needs the
    value gets ``error`` when it deserializes it.
    """

    __slots__ = ("error", "location")

    def __init__(self, error: BaseException, location: tuple[str, int] | None = None) -> None:
        self.error = error
        self.location = location  # set: mapping it again may succeed (see _map_or_defer)


def deserialize(obj: Serialized) -> Any:
    for i, buf in enumerate(obj.buffers):
        if isinstance(buf, Unavailable):
            if buf.location is None:
                raise buf.error
            try:
                cast("list[Any]", obj.buffers)[i] = _buffer_mapper(*buf.location)  # holds buf
            except Exception:
                raise buf.error from None
    try:
        buffers = obj.buffers
        # (no keyword when there is no buffer, nearly always: it is parsed by name)
        return pickle.loads(obj.data, buffers=buffers) if buffers else pickle.loads(obj.data)
    except Exception as exc:
        salvaged = _salvage_error(obj) if obj.is_error else None
        if salvaged is not None:
            return salvaged
        raise SerializationError(f"Could not unpickle a value: {exc!r}") from exc


class _SalvagingUnpickler(pickle.Unpickler):
    """Loads an error value, a class that cannot be loaded here becoming a stand-in."""

    def __init__(self, data: bytes, buffers: list[Any] | tuple[()]) -> None:
        super().__init__(io.BytesIO(data), buffers=buffers)
        self.missing = False

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except Exception as exc:
            self.missing = True
            return type(name, (UnloadableCause,), {
                "__module__": __name__, "origin": f"{module}.{name}",
                "reason": f"{type(exc).__name__}: {exc}",
            })


def _salvage_error(obj: Serialized) -> TaskError | None:
    """A task's error whose exception's class cannot be loaded in this process (a module
    only the worker had): the ``TaskError`` with the class's name, the message and the
    remote traceback, rather than a bare "could not unpickle" that loses them. None if
    the value is anything else."""
    unpickler = _SalvagingUnpickler(obj.data, obj.buffers)
    try:
        value = unpickler.load()
    except Exception:
        return None
    if not unpickler.missing or not isinstance(value, TaskError) or value.cause is not None:
        return None
    return value


def _reduce_code(code: types.CodeType) -> Any:
    """cloudpickle's reduction of a code object, keeping its file name.

    cloudpickle (since 3.1.3) names code pickled by value ``<dynamic-code>``, for payloads
    that do not depend on where they were made; remote tracebacks would then lose the file
    and line of everything defined in ``__main__`` or a notebook.
    """
    ctor, args = _cloudpickle_code_reduce(code)
    filename = code.co_filename
    files = _collector.files
    if files is not None:
        files.add(filename)
    return ctor, tuple(filename if a == _DYNAMIC_CODE else a for a in args)


_DYNAMIC_CODE = "<dynamic-code>"
_cloudpickle_code_reduce = cloudpickle.cloudpickle._code_reduce


#: Reductions the program registered (``actorlib.util.register_serializer``), by exact
#: type, consulted before any other: this process's pickles only, as in Ray.
_registered: dict[type, Callable[[Any], Any]] = {}


def register_reducer(cls: type, reducer: Callable[[Any], Any]) -> None:
    """Pickle instances of ``cls`` (exactly that type) with ``reducer`` in this process."""
    if not isinstance(cls, type):
        raise TypeError(f"register_serializer() takes a class, got {cls!r}")
    if cls in PLAIN_SCALARS or cls in (tuple, list, dict, set, frozenset, bytearray):
        # pickle writes these itself, before it looks at any table
        raise ValueError(f"the pickling of Python's built-in {cls.__name__} cannot be replaced")
    _registered[cls] = reducer


def unregister_reducer(cls: type) -> None:
    _registered.pop(cls, None)


class _Pickler(cloudpickle.Pickler):
    """cloudpickle, with code pickled by value keeping its file name (``_reduce_code``),
    and the program's registered reductions first."""

    dispatch_table = collections.ChainMap(
        _registered, {types.CodeType: _reduce_code}, cloudpickle.Pickler.dispatch_table
    )


def _dumps(value: Any, buffer_callback: Callable[[pickle.PickleBuffer], bool] | None = None,
           ) -> bytes:
    """``cloudpickle.dumps`` with :class:`_Pickler`."""
    with io.BytesIO() as file:
        _Pickler(file, protocol=5, buffer_callback=buffer_callback).dump(value)
        return file.getvalue()


#: Source shipped with a function for its tracebacks, at most this much in all.
MAX_SOURCE_BYTES = 1 << 20


def dumps_function(fn: Any) -> bytes:
    """Pickle a function or class, by value when it lives in ``__main__`` (cloudpickle).

    The source of every file whose code went by value travels along (a notebook's cells,
    a script on another machine): the worker registers it in ``linecache``, so remote
    tracebacks show the driver's lines.
    """
    outer = _collector.files
    files: set[str] = set()
    _collector.files = files
    try:
        body = _dumps(fn)
    except Exception as exc:
        raise SerializationError(describe_unpicklable(fn, exc)) from exc
    finally:
        _collector.files = outer
    sources: dict[str, list[str]] = {}
    budget = MAX_SOURCE_BYTES
    for filename in sorted(files):
        lines = linecache.getlines(filename)
        size = sum(map(len, lines))
        if lines and size <= budget:
            sources[filename] = lines
            budget -= size
    return pickle.dumps((body, sources), protocol=5)


def loads_function(blob: bytes) -> Any:
    body, sources = pickle.loads(blob)
    for filename, lines in sources.items():
        # Only where this machine cannot read the file itself (a notebook's cells, a
        # script elsewhere): an entry without mtime is never checked against the disk.
        if filename not in linecache.cache and not os.path.exists(filename):
            linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    return pickle.loads(body)


def _picklable(value: Any) -> bool:
    try:
        cloudpickle.dumps(value, protocol=5)
    except Exception:
        return False
    return True


def _children(value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [(f"[{k!r}]", v) for k, v in value.items()]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [(f"[{i}]", v) for i, v in enumerate(value)]
    state = getattr(value, "__dict__", None)
    if isinstance(state, dict):
        return [(f".{k}", v) for k, v in state.items()]
    closure = getattr(value, "__closure__", None)
    code = getattr(value, "__code__", None)
    if closure and code is not None:
        names = code.co_freevars
        return [(f"<closure {n}>", c.cell_contents) for n, c in zip(names, closure, strict=False)]
    return []


def find_unpicklable(value: Any, path: str = "value", depth: int = 0) -> tuple[str, Any]:
    """Walk into containers, attributes and closures to the innermost unpicklable object."""
    if depth < 6:
        for suffix, child in _children(value):
            if not _picklable(child):
                return find_unpicklable(child, path + suffix, depth + 1)
    return path, value


def describe_unpicklable(value: Any, exc: BaseException, label: str = "value") -> str:
    if isinstance(exc, RecursionError) or isinstance(exc.__cause__, RecursionError):
        # Too deep to pickle (cloudpickle wraps the RecursionError): walking into the
        # value or repr() of it would overflow again.
        return (
            f"Could not serialize {label} (type {type(value).__qualname__}): it is nested "
            f"too deeply to pickle ({exc}). Flatten it, or raise sys.setrecursionlimit() "
            "in the caller and in the workers."
        )
    path, culprit = find_unpicklable(value, label)
    try:
        text = repr(culprit)
    except Exception:  # a broken or too deep __repr__ must not hide the real error
        text = f"<{type(culprit).__qualname__} object>"
    if len(text) > 200:
        text = text[:200] + "..."
    return (
        f"Could not serialize {path} = {text} (type {type(culprit).__qualname__}): {exc}. "
        "Arguments and results cross to workers by pickling (cloudpickle); pass something "
        "picklable, or create the object inside the task or actor instead."
    )
