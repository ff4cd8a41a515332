"""A Ray Core script, unchanged but for `import actorlib as ray`, runs in a fresh interpreter."""

from __future__ import annotations

import textwrap

import pytest
from testkit import run_script

pytestmark = pytest.mark.slow

RAY_SCRIPT = textwrap.dedent(
    """
    import actorlib as ray

    ray.init(num_cpus=4)
    assert ray.is_initialized()

    @ray.remote
    def square(x):
        return x * x

    @ray.remote
    def add(a, b):
        return a + b

    @ray.remote
    def fails(msg):
        raise ValueError(msg)

    @ray.remote
    class Counter:
        def __init__(self):
            self.value = 0

        def increment(self):
            self.value += 1
            return self.value

        def get_value(self):
            return self.value

    # tasks and refs as arguments
    futures = [square.remote(i) for i in range(4)]
    assert ray.get(futures) == [0, 1, 4, 9]
    total = add.remote(futures[2], futures[3])
    assert ray.get(total) == 13
    obj = ray.put(100)
    assert ray.get(add.remote(obj, 1)) == 101

    # an actor counter
    counter = Counter.remote()
    refs = [counter.increment.remote() for _ in range(5)]
    assert ray.get(refs) == [1, 2, 3, 4, 5]

    # ray.wait
    ready, not_ready = ray.wait(futures, num_returns=4, timeout=30)
    assert len(ready) == 4 and not not_ready

    # named actor
    named = Counter.options(name="global_counter", lifetime="detached").remote()
    ray.get(named.increment.remote())
    same = ray.get_actor("global_counter")
    assert ray.get(same.get_value.remote()) == 1

    # error handling the Ray way
    try:
        ray.get(fails.remote("expected failure"))
    except ray.exceptions.RayTaskError as err:
        assert "expected failure" in str(err)
        assert isinstance(err, ValueError)
    else:
        raise AssertionError("no error raised")
    try:
        ray.get(fails.remote("x"))
    except ray.exceptions.RayError:
        pass

    # a timeout, Ray style
    try:
        ray.get(ray.get_actor("global_counter").get_value.remote(), timeout=30)
    except ray.exceptions.GetTimeoutError:
        raise AssertionError("should not time out")

    res = ray.cluster_resources()
    assert res["CPU"] == 4, res
    assert ray.available_resources()["CPU"] <= 4
    assert len(ray.nodes()) >= 1
    ray.kill(named)
    ray.shutdown()
    assert not ray.is_initialized()
    print("RAY-COMPAT-OK")
    """
)


def test_ray_core_script_runs_unchanged(backend_name, tmp_path):
    script = tmp_path / "ray_script.py"
    script.write_text(RAY_SCRIPT)
    proc = run_script(str(script), backend_name)
    assert "RAY-COMPAT-OK" in proc.stdout
