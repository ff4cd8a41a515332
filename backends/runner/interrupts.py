"""A cancel's ``KeyboardInterrupt`` raised into a running task's thread, never inside an
import or one of actorlib's finalizers.

An exception that lands while a thread imports a module leaves the import half done:
Python drops the module from ``sys.modules`` but keeps the submodules it had imported, and
a later import of the module no longer binds them as its attributes (``asyncio``'s own
``__init__`` then fails with ``NameError: name 'coroutines' is not defined``). Every later
task of that worker that imports the module would fail. A task imports when its function
or arguments are unpickled (by reference, from the module that defines them) and when its
code imports lazily, so a cancel that arrives then waits until the thread has left the
import machinery: a few milliseconds, as a rule.

A finalizer of actorlib's (``late_interrupts.FINALIZERS``: a ref's ``__del__`` sending its
drop) waits it out as well: an interrupt there is raised again in the task, but the drop it
cut short was never sent, and the object lived until shutdown. A task that lets refs go
in a loop is in one often, so the thread is looked at the moment the interrupt is sent:
stopped at a bytecode there, the interrupt would land there.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from actorlib.core.late_interrupts import FINALIZERS

#: The import machinery's code, frozen (the default) or from source (``-X
#: frozen_modules=off``): a thread with one of these in its stack is importing.
_IMPORT_CODE = (
    "<frozen importlib._bootstrap>",
    "<frozen importlib._bootstrap_external>",
    "importlib/_bootstrap.py",
    "importlib/_bootstrap_external.py",
)

#: How often a deferred interrupt looks again whether its thread has left the import or
#: the finalizer.
RETRY_S = 0.002


def held_back(thread_id: int) -> bool:
    """Whether an interrupt of thread ``thread_id`` must wait: it is inside an import or
    one of actorlib's finalizers now."""
    return held_back_at(sys._current_frames().get(thread_id))


def held_back_at(frame: FrameType | None, files: tuple[str, ...] = ()) -> bool:
    """Whether an interrupt at ``frame`` must wait: it or a frame that called it runs the
    import machinery, one of actorlib's finalizers, or code of a file ending in one of
    ``files`` (a backend's own)."""
    held = _IMPORT_CODE + files
    while frame is not None:
        code = frame.f_code
        if code in FINALIZERS or code.co_filename.endswith(held):
            return True
        frame = frame.f_back
    return False


def raise_in_thread(thread_id: int, exc_type: type[BaseException] | None) -> None:
    """Raise ``exc_type`` in thread ``thread_id`` at its next bytecode (None: withdraw one
    not raised yet)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type) if exc_type else None
    )


def until_done(lock: Any, attempt: Callable[[], bool]) -> None:
    """Call ``attempt`` now (its caller holds ``lock``); while it answers False (its
    thread is :func:`held_back`: not yet), again with ``lock`` held every
    :data:`RETRY_S` from a thread of its own, until it answers True (delivered, or no
    longer wanted)."""
    if attempt():
        return

    def retry() -> None:
        while True:
            time.sleep(RETRY_S)
            with lock:
                if attempt():
                    return

    threading.Thread(target=retry, name="actorlib-interrupt", daemon=True).start()
