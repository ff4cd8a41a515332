"""``actorlib.util.inspect_serializability`` names what keeps an object from pickling."""

from __future__ import annotations

import io
import threading

from actorlib.util import inspect_serializability
from actorlib.util.check_serialize import FailureTuple


class Holder:
    def __init__(self) -> None:
        self.fine = [1, 2, 3]
        self.lock = threading.Lock()


def test_a_picklable_object_passes() -> None:
    out = io.StringIO()
    ok, failures = inspect_serializability({"a": [1, 2], "f": len}, print_file=out)
    assert ok is True
    assert failures == set()
    assert "Serialization succeeded" in out.getvalue()


def test_a_closure_names_the_captured_variable() -> None:
    lock = threading.Lock()

    def closure() -> None:
        with lock:
            pass

    out = io.StringIO()
    ok, failures = inspect_serializability(closure, name="closure", print_file=out)
    assert ok is False
    (failure,) = failures
    assert isinstance(failure, FailureTuple)
    assert failure.name == "lock" and failure.obj is lock and failure.parent is closure
    text = out.getvalue()
    assert "Checking Serializability of closure" in text
    assert "Serializing 'lock'" in text and "FAIL serialization" in text


def test_a_global_the_function_uses_is_found() -> None:
    """A function of ``__main__`` (a script, a notebook) is pickled with its globals."""
    script = {"__name__": "__main__", "GLOBAL_LOCK": threading.Lock(), "OK": 1}
    exec("def uses_a_global_lock():\n    with GLOBAL_LOCK:\n        return OK\n", script)
    ok, failures = inspect_serializability(script["uses_a_global_lock"],
                                           print_file=io.StringIO())
    assert not ok
    assert [f.name for f in failures] == ["GLOBAL_LOCK"]


def test_the_search_walks_containers_and_attributes_to_the_innermost_part() -> None:
    holder = Holder()
    ok, failures = inspect_serializability([1, {"h": holder}], print_file=io.StringIO())
    assert not ok
    (failure,) = failures
    assert failure.obj is holder.lock and failure.parent is holder and failure.name == "lock"


def test_a_failure_has_ray_s_path_from_the_inspected_object() -> None:
    """Ray 2.60's ``FailureTuple`` has ``obj``, ``path`` and ``parent`` (no ``name``)."""
    holder = Holder()
    ok, failures = inspect_serializability([1, {"h": holder}], name="batch",
                                           print_file=io.StringIO())
    assert not ok
    (failure,) = failures
    assert failure.path == ("batch", "[1]", "'h'", "lock")
    assert "path=batch -> [1] -> 'h' -> lock" in repr(failure)


def test_depth_bounds_the_search() -> None:
    holder = Holder()
    ok, failures = inspect_serializability([holder], depth=0, print_file=io.StringIO())
    assert not ok
    (failure,) = failures
    assert failure.obj[0] is holder  # not looked into: the outermost object is reported
