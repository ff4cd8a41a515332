"""``ray.util.register_serializer``: how instances of a class travel, for classes that do
not pickle (they hold a lock, a socket, a C handle) or pickle badly.

As in Ray, a registration holds in the process that made it: values the driver sends (task
arguments, ``put``) use it; a worker that returns or puts such values registers too (in a
task, or an actor's ``__init__``). The deserializer travels inside each value, so the
process reading it needs nothing registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from actorlib.core.serialization import register_reducer, unregister_reducer

__all__ = ["deregister_serializer", "register_serializer"]


def register_serializer(
    cls: type, *, serializer: Callable[[Any], Any], deserializer: Callable[[Any], Any],
) -> None:
    """Send an instance ``obj`` of ``cls`` (exactly that class, not its subclasses) as
    ``serializer(obj)``, rebuilt where it is read by ``deserializer(that)``. The
    deserializer must pickle (a module-level function, or one defined in ``__main__``)."""
    if not callable(serializer) or not callable(deserializer):
        raise TypeError("register_serializer() needs callable serializer= and deserializer=")

    def reduce(obj: Any) -> tuple[Callable[[Any], Any], tuple[Any]]:
        return deserializer, (serializer(obj),)

    register_reducer(cls, reduce)


def deregister_serializer(cls: type) -> None:
    """Forget ``cls``'s serializer in this process (nothing happens if it has none)."""
    unregister_reducer(cls)
