"""A cluster on this machine: a head and two nodes, a job across them, then stop.

Run it with:  python examples/cluster_local.py

The same job runs unchanged on machines of a real cluster: start the head on one
(``actorlib start --head --host 0.0.0.0``), join the others with ``actorlib start
--address HEAD:6390 --token-file ...``, and connect with ``actorlib.init(address=...)``.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import time

import actorlib
from actorlib.cluster_cli import query_status


def cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "actorlib", *args], check=True)


@actorlib.remote
def word_count(text: str) -> collections.Counter[str]:
    return collections.Counter(text.split())


@actorlib.remote
def node() -> str:
    return actorlib.get_runtime_context().get_node_id()[:8]


@actorlib.remote
class Tally:
    def __init__(self) -> None:
        self.total: collections.Counter[str] = collections.Counter()

    def add(self, counts: collections.Counter[str]) -> int:
        self.total.update(counts)
        return sum(self.total.values())

    def top(self, n: int) -> list[tuple[str, int]]:
        return self.total.most_common(n)


def main() -> None:
    # A head (with a node of 1 CPU) on a free port, and a second node with 1 more CPU.
    cli("start", "--head", "--port", "0", "--num-cpus", "1")
    try:
        cli("start", "--address", query_status()["address"], "--num-cpus", "1")
        actorlib.init(address="auto")
        while len(actorlib.nodes()) < 2:
            time.sleep(0.05)
        print("nodes:", len(actorlib.nodes()), "CPUs:", actorlib.cluster_resources()["CPU"])

        lines = [f"the quick brown fox {i % 7} jumps over the lazy dog {i % 3}"
                 for i in range(400)]
        chunks = [" ".join(lines[i : i + 50]) for i in range(0, len(lines), 50)]
        tally = Tally.remote()
        totals = [tally.add.remote(word_count.remote(chunk)) for chunk in chunks]
        print("words counted:", actorlib.get(totals)[-1])
        print("top words:", actorlib.get(tally.top.remote(3)))
        spread = {actorlib.get(node.options(scheduling_strategy="SPREAD").remote())
                  for _ in range(8)}
        print("tasks ran on", len(spread), "node(s)")
        actorlib.shutdown()
    finally:
        cli("stop")


if __name__ == "__main__":
    main()
