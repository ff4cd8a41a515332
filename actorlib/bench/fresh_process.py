"""The workloads that measure a fresh interpreter: ``startup`` and ``idle_memory``.

Unlike the others they do not run in the benchmark's started runtime: each run starts a
new ``python -c`` process from a snippet (one per target; the alternatives bring their own
as ``env.extra["startup_snippet"]``), so they are shared by actorlib, Ray and every
alternative. Separate because this is process plumbing (snippets, child environments,
measuring a whole process tree), unlike the API calls the other workloads time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from actorlib.bench.workload_kit import Env, need_psutil

if TYPE_CHECKING:
    from actorlib.bench.runner import Harness

__all__ = ["STARTUP_SNIPPETS", "idle_memory", "startup"]

# Snippets run by ``python -c`` for startup and idle_memory. Each starts the target,
# gets a first result, prints a JSON line of phase times, then (for idle_memory) waits
# for a line on stdin before shutting down. ``{num_cpus}``, ``{backend}`` and ``{idle}``
# are filled in.
_STARTUP_TEMPLATE = """
import json, sys, time
t0 = time.perf_counter()
import {module} as rt
t1 = time.perf_counter()
rt.init({init_args})
t2 = time.perf_counter()
@rt.remote
def f():
    return 1
rt.get(f.remote())
t3 = time.perf_counter()
if {{idle}}:
    print(json.dumps({{{{"ready": True}}}}), flush=True)
    sys.stdin.readline()
t3b = time.perf_counter()
rt.shutdown()
t4 = time.perf_counter()
print(json.dumps({{{{"import_s": t1 - t0, "init_s": t2 - t1, "first_result_s": t3 - t2,
                  "shutdown_s": t4 - t3b}}}}), flush=True)
"""

# Formatted twice: once here per target, then with backend/num_cpus/idle per run.
STARTUP_SNIPPETS: dict[str, str] = {
    "actorlib": _STARTUP_TEMPLATE.format(
        module="actorlib", init_args="backend={backend!r}, num_cpus={num_cpus}"
    ),
    "ray": _STARTUP_TEMPLATE.format(
        module="ray",
        init_args='num_cpus={num_cpus}, include_dashboard=False, logging_level="ERROR"',
    ),
}


def _snippet(env: Env, idle: bool) -> str:
    template = env.extra.get("startup_snippet") or STARTUP_SNIPPETS[env.target]
    return str(template).format(
        backend=env.backend, num_cpus=env.num_cpus, idle=idle,
    )


def _child_env() -> dict[str, str]:
    """The environment of a measured interpreter: an installed program's, with bytecode.

    ``PYTHONDONTWRITEBYTECODE`` (set in some shells and CI images) would make every run
    compile each imported module from source again: about twice the startup of a program
    whose package was installed with its ``.pyc`` files, for actorlib and for every
    alternative. The child writes its caches, so only the first, unmeasured, run compiles.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    return env


def startup(env: Env, h: Harness) -> None:
    code = _snippet(env, idle=False)

    def measure() -> tuple[dict[str, float], dict[str, Any]]:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
            env=_child_env(),
        )
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"startup snippet failed:\n{proc.stderr[-2000:]}")
        phases = json.loads(proc.stdout.strip().splitlines()[-1])
        return {"startup": elapsed}, {k: round(v, 4) for k, v in phases.items()}

    h.sample(measure, units={"startup": "s"}, note="fresh interpreter to exit")


def idle_memory(env: Env, h: Harness) -> None:
    psutil = need_psutil()
    code = _snippet(env, idle=True)

    def measure() -> tuple[dict[str, float], dict[str, Any]]:
        child = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=_child_env(),
        )
        assert child.stdin is not None and child.stdout is not None
        try:
            line = child.stdout.readline()
            if not line:
                raise RuntimeError(f"idle_memory snippet failed:\n{child.communicate()[1]}")
            time.sleep(0.5)  # let the tree settle (lazy workers, daemons)
            root = psutil.Process(child.pid)
            procs = [root, *root.children(recursive=True)]
            rss = pss = 0
            for p in procs:
                try:
                    info = p.memory_full_info()
                except psutil.Error:
                    continue
                rss += info.rss
                pss += getattr(info, "pss", info.rss)
            child.stdin.write("\n")
            child.stdin.flush()
            _out, err = child.communicate(timeout=120)
            if child.returncode != 0:
                raise RuntimeError(f"idle_memory snippet failed:\n{err[-2000:]}")
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
        return (
            {"idle_memory.rss": rss / 2**20, "idle_memory.pss": pss / 2**20},
            {"processes": len(procs)},
        )

    h.sample(
        measure, units={"idle_memory.rss": "MB", "idle_memory.pss": "MB"},
        note="whole process tree after start and a first result",
    )
