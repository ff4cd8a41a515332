"""A real two-node Ray cluster on loopback, driven through actorlib's ray backend.

``ray start --head`` and a second ``ray start`` (each node with a resource of its own),
then an actorlib program in a child process: work placed on each node, a 100 MB numpy
array passed between them through Ray's object store, and a task whose Ray worker is
killed, retried. The cluster is started and stopped by the test (by pid, see
``ray_local``), and nothing is left behind. Runs where Ray and numpy are installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("ray", reason="the ray backend needs Ray: pip install 'actorlib[ray]'")
pytest.importorskip("numpy", reason="the multi-node test moves a numpy array")

from ray_local import RAY_ENV, LocalRay

PROGRAM = textwrap.dedent('''
    import os, sys
    import numpy as np
    import actorlib

    actorlib.init(backend="ray", address=sys.argv[1])

    def where():
        return actorlib.get_runtime_context().get_node_id()

    @actorlib.remote(resources={"head_side": 1})
    def on_head():
        return where()

    @actorlib.remote(resources={"other_side": 1})
    def on_other():
        return where()

    @actorlib.remote(resources={"other_side": 1})
    def make(n):
        return np.arange(n, dtype=np.float64)

    @actorlib.remote(resources={"head_side": 1})
    def total(a):
        return float(a.sum()), a.nbytes, where()

    @actorlib.remote(resources={"other_side": 1}, max_retries=2)
    def dies_once(marker):
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)  # the Ray worker dies mid-task
        return "retried"

    nodes = {n["NodeID"] for n in actorlib.nodes() if n["Alive"]}
    head, other = actorlib.get([on_head.remote(), on_other.remote()], timeout=120)
    assert head != other and {head, other} <= nodes, (head, other, nodes)

    n = 100 * 1024 * 1024 // 8
    s, nbytes, ran_on = actorlib.get(total.remote(make.remote(n)), timeout=120)
    assert nbytes == 100 * 1024 * 1024 and s == float(n * (n - 1) // 2) and ran_on == head

    assert actorlib.get(dies_once.remote(sys.argv[2]), timeout=120) == "retried"
    actorlib.shutdown()
    print("OK")
''')


def test_two_nodes_place_work_move_data_and_survive_a_killed_worker(tmp_path):
    cluster = LocalRay()
    try:
        cluster.start_head(2, {"head_side": 1})
        cluster.add_node(2, {"other_side": 1})
        env = {**os.environ, **RAY_ENV}
        done = subprocess.run(
            [sys.executable, "-c", PROGRAM, cluster.address, str(tmp_path / "died")],
            env=env, capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0 and done.stdout.strip().endswith("OK"), (
            done.stdout[-3000:] + done.stderr[-3000:]
        )
        assert cluster.processes(), "the cluster outlives its driver (it was not ours to stop)"
    finally:
        cluster.stop()
    assert cluster.processes() == []
