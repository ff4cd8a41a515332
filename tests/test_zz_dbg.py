import concurrent.futures as cf
import pytest
import actorlib
from actorlib import Executor
from test_executor import Gauge, gauged, square

pytestmark = pytest.mark.shared_runtime

def test_a(backend_name):
    with Executor(2, backend=backend_name) as ex:
        assert ex.submit(square, 7).result(timeout=60) == 49

def test_b(rt):
    import ray
    print("ctx", ray.get_runtime_context().gcs_address)
    @ray.remote(num_cpus=0)
    class A:
        def f(self): return 1
    a = A.remote()
    print("plain", ray.get(a.f.remote(), timeout=60))
    gauge = Gauge.remote()
    print("peak0", actorlib.get(gauge.get_peak.remote(), timeout=60))
    with Executor(2) as ex:
        futures = [ex.submit(gauged, gauge, 6) for _ in range(6)]
        cf.wait(futures, timeout=60)
        for f in futures:
            print(repr(f.exception())[:300])
    print("peak", actorlib.get(gauge.get_peak.remote(), timeout=60))
