"""The jobs a core has served: each driver, from its start to its end (``list_jobs``).

A driver running its own core (thread, process, sim backends) is the one job of its
runtime; a cluster's head records each driver that connects and ends it when it leaves.
Rows have the fields of Ray's ``JobDetails`` where actorlib has them (a driver is a job
of type ``DRIVER``; actorlib has no job submission server, so no ``SUBMISSION`` jobs).
Runs on the core loop only.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from actorlib.core.ids import JobID

#: How many ended jobs the core remembers.
ENDED_JOBS_KEPT = 1_000


def entrypoint() -> str:
    """This process's command line, as Ray's job table shows a driver job's entrypoint."""
    return " ".join([os.path.basename(sys.executable), *sys.argv])


class Jobs:
    """Each driver job the core has seen: who, what it runs, when, and whether it ended."""

    def __init__(self) -> None:
        self.records: dict[int, dict[str, Any]] = {}

    def started(self, job: int, pid: int, entrypoint: str, host: str, node_id: str = "") -> None:
        """Driver ``job`` (its id prefix) began: process ``pid`` on ``host`` running
        ``entrypoint`` (its command line)."""
        self.records[job] = {
            "type": "DRIVER", "job_id": JobID(job).hex(), "submission_id": None,
            "status": "RUNNING", "entrypoint": entrypoint, "message": None,
            "start_time": int(time.time() * 1000), "end_time": None,
            "driver_info": {"id": JobID(job).hex(), "node_ip_address": host, "pid": str(pid)},
            "driver_node_id": node_id, "metadata": {}, "runtime_env": {},
            "error_type": None, "driver_exit_code": None,
        }

    def ended(self, job: int) -> None:
        """Driver ``job`` left (shut down, or its connection dropped): SUCCEEDED, as Ray
        reports a driver job that finished."""
        record = self.records.get(job)
        if record is None or record["end_time"] is not None:
            return
        record["status"] = "SUCCEEDED"
        record["end_time"] = int(time.time() * 1000)
        ended = [j for j, r in self.records.items() if r["end_time"] is not None]
        for old in ended[:max(0, len(ended) - ENDED_JOBS_KEPT)]:
            del self.records[old]

    def rows(self) -> list[dict[str, Any]]:
        """Every job, oldest first (copies: the caller may change them)."""
        return [{**r, "driver_info": dict(r["driver_info"])} for r in self.records.values()]
