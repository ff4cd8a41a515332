"""Remote functions: sync and async def, options, num_returns, argument passing."""

from __future__ import annotations

import asyncio
import pickle

import pytest
from testkit import T

import actorlib

pytestmark = pytest.mark.shared_runtime


@actorlib.remote
def add(a, b=10):
    return a + b


@actorlib.remote
async def async_mul(a, b):
    await asyncio.sleep(0)
    return a * b


@actorlib.remote
def identity(x):
    return x


@actorlib.remote
def describe(x):
    """Report what the task received, to tell a resolved value from a ref."""
    return type(x).__name__, isinstance(x, actorlib.ObjectRef)


@actorlib.remote
def describe_nested(container):
    inner = container[0] if isinstance(container, list) else container["k"]
    return isinstance(inner, actorlib.ObjectRef), actorlib.get(inner, timeout=T)


@actorlib.remote
def mutate_and_return(lst):
    lst.append("task")
    return lst


@actorlib.remote
def two_values(x):
    return x, x + 1


@actorlib.remote(num_returns=3)
def three_values(x):
    return x, x * 2, x * 3


def test_a_remote_function_shows_its_function_as_functools_wraps_does():
    """Its name, module, docstring, annotations, ``__wrapped__`` and the function's own
    attributes (``RemoteFunction`` sets them one by one, not through ``__dict__``)."""

    def plain(x: int) -> int:
        """Doc of plain."""
        return x

    plain.tag = "kept"  # type: ignore[attr-defined]
    for wrapped in (actorlib.remote(plain), actorlib.remote(plain).options(num_cpus=0)):
        for attr in ("__module__", "__name__", "__qualname__", "__doc__", "__annotations__"):
            assert getattr(wrapped, attr) == getattr(plain, attr), attr
        assert wrapped.__wrapped__ is plain
        assert wrapped.tag == "kept"


def test_sync_task(rt):
    assert actorlib.get(add.remote(1, 2), timeout=T) == 3
    assert actorlib.get(add.remote(1), timeout=T) == 11
    assert actorlib.get(add.remote(a=5, b=1), timeout=T) == 6


def test_async_def_task(rt):
    """Remote async def functions run on a loop and return their awaited result."""
    assert actorlib.get(async_mul.remote(6, 7), timeout=T) == 42


def test_remote_returns_object_ref(rt):
    ref = add.remote(1, 1)
    assert isinstance(ref, actorlib.ObjectRef)
    assert isinstance(ref.hex(), str) and ref.hex()
    assert actorlib.get(ref, timeout=T) == 2


def test_many_tasks_in_order(rt):
    refs = [add.remote(i, i) for i in range(200)]
    assert actorlib.get(refs, timeout=T) == [2 * i for i in range(200)]


def test_get_list_preserves_order_not_completion(rt):
    refs = [identity.remote(i) for i in range(10)][::-1]
    assert actorlib.get(refs, timeout=T) == list(range(10))[::-1]


def test_direct_call_raises_type_error(rt):
    with pytest.raises(TypeError):
        add(1, 2)


def test_unknown_option_names_it(rt):
    with pytest.raises(TypeError, match="bogus_option"):
        add.options(bogus_option=1)
    with pytest.raises(TypeError, match="another_bogus"):
        actorlib.remote(another_bogus=3)(lambda: 1)


def test_options_do_not_change_the_original(rt):
    f2 = add.options(num_cpus=2, name="custom-name", scheduling_strategy="SPREAD", max_retries=0)
    assert actorlib.get(f2.remote(1, 1), timeout=T) == 2
    assert actorlib.get(add.options(scheduling_strategy="DEFAULT").remote(2), timeout=T) == 12
    assert actorlib.get(add.remote(3), timeout=T) == 13


def test_num_returns_option(rt):
    refs = two_values.options(num_returns=2).remote(5)
    assert isinstance(refs, list) and len(refs) == 2
    assert all(isinstance(r, actorlib.ObjectRef) for r in refs)
    assert actorlib.get(refs, timeout=T) == [5, 6]


def test_num_returns_in_decorator(rt):
    refs = three_values.remote(2)
    assert len(refs) == 3
    assert actorlib.get(refs, timeout=T) == [2, 4, 6]
    assert actorlib.get(refs[2], timeout=T) == 6


def test_num_returns_one_returns_single_ref(rt):
    ref = two_values.options(num_returns=1).remote(1)
    assert isinstance(ref, actorlib.ObjectRef)
    assert actorlib.get(ref, timeout=T) == (1, 2)


def test_top_level_ref_argument_is_resolved(rt):
    ref = actorlib.put([1, 2, 3])
    assert actorlib.get(describe.remote(ref), timeout=T) == ("list", False)
    assert actorlib.get(identity.remote(ref), timeout=T) == [1, 2, 3]


def test_ref_keyword_argument_is_resolved(rt):
    assert actorlib.get(add.remote(a=actorlib.put(1), b=add.remote(1, 1)), timeout=T) == 3


def test_task_result_ref_chains(rt):
    """A dynamic task graph: each task consumes the previous task's ref."""
    ref = add.remote(0, 1)
    for _ in range(10):
        ref = add.remote(ref, 1)
    assert actorlib.get(ref, timeout=T) == 11


def test_nested_ref_is_passed_as_ref(rt):
    inner = actorlib.put("payload")
    assert actorlib.get(describe_nested.remote([inner]), timeout=T) == (True, "payload")
    assert actorlib.get(describe_nested.remote({"k": inner}), timeout=T) == (True, "payload")


def test_arguments_are_passed_by_value(rt):
    mine = ["driver"]
    result = actorlib.get(mutate_and_return.remote(mine), timeout=T)
    assert result == ["driver", "task"]
    assert mine == ["driver"]


def test_arguments_snapshot_at_submission(rt):
    """Mutating an argument after .remote() must not change what the task sees."""
    mine = [1]
    ref = identity.remote(mine)
    mine.append(2)
    assert actorlib.get(ref, timeout=T) == [1]


def test_object_ref_hashable_and_picklable(rt):
    ref = actorlib.put(41)
    ref2 = pickle.loads(pickle.dumps(ref))
    assert ref2 == ref and hash(ref2) == hash(ref) and ref2.hex() == ref.hex()
    assert {ref: 1}[ref2] == 1
    assert actorlib.get(ref2, timeout=T) == 41
    other = actorlib.put(41)
    assert other != ref and other.hex() != ref.hex()


def test_refs_from_results_are_distinct(rt):
    refs = [identity.remote(1) for _ in range(5)]
    assert len({r.hex() for r in refs}) == 5


def test_memory_option_fits_the_machine(rt):
    """memory= is a Ray resource request in bytes; a small one fits any real node."""
    assert actorlib.get(add.options(memory=10 * 1024 * 1024).remote(1, 1), timeout=T) == 2


def test_tasks_from_several_driver_threads_with_chained_arguments(rt):
    """Several threads submit at once, each a chain where every task takes the ref of
    the one before (so completions start dependents while others submit), plus
    independent tasks; every result is right."""
    import threading

    results: dict[int, tuple[int, list[int]]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def submit(k: int) -> None:
        try:
            start.wait(T)
            ref = add.remote(k, 0)
            for _ in range(20):
                ref = add.remote(ref, 1)
            loose = [add.remote(k, i) for i in range(20)]
            results[k] = (actorlib.get(ref, timeout=T), actorlib.get(loose, timeout=T))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T)
    assert not errors
    assert results == {k: (k + 20, [k + i for i in range(20)]) for k in range(4)}
