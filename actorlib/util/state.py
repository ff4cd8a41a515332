"""``actorlib.util.state``: Ray's state API (``ray.util.state``) over the core's records.

Each call asks the core (through the process's client: the driver's own runtime, or the
driver or head a worker or cluster driver talks to) for plain rows of one kind, then
filters, sorts and cuts them here. Rows are dicts with Ray's field names where Ray has the
field, readable as attributes too (:class:`StateRow`, as Ray's ``TaskState`` /
``ActorState`` objects read both ways); see "State API and CLI" in docs/observability.md.
"""

from __future__ import annotations

import collections
import fnmatch
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from actorlib import session
from actorlib.core import context
from actorlib.core.refs import ObjectRef
from actorlib.exceptions import NotSupportedError

__all__ = [
    "DEFAULT_LIMIT",
    "StateRow",
    "get_actor",
    "get_job",
    "get_log",
    "get_node",
    "get_objects",
    "get_placement_group",
    "get_task",
    "get_worker",
    "list_actors",
    "list_cluster_events",
    "list_jobs",
    "list_logs",
    "list_metrics",
    "list_nodes",
    "list_objects",
    "list_placement_groups",
    "list_runtime_envs",
    "list_tasks",
    "list_workers",
    "rows",
    "summarize_actors",
    "summarize_objects",
    "summarize_tasks",
]

DEFAULT_LIMIT = 100  # Ray's
OPERATORS = ("=", "!=")

#: The fields shown without ``detail=True``, per kind (Ray shows a short form likewise).
BRIEF: dict[str, tuple[str, ...]] = {
    "tasks": ("task_id", "attempt_number", "name", "state", "job_id", "actor_id", "type",
              "func_or_class_name", "node_id", "worker_pid"),
    "actors": ("actor_id", "class_name", "state", "job_id", "name", "node_id", "pid",
               "ray_namespace", "num_restarts", "death_cause"),
    "objects": ("object_id", "object_size", "reference_count", "task_status", "where",
                "spilled"),
    "nodes": ("node_id", "state", "resources_total", "resources_available"),
    "workers": ("worker_id", "is_alive", "worker_type", "node_id", "pid", "actor_class",
                "current_task_names"),
    "placement_groups": ("placement_group_id", "name", "state", "strategy", "is_detached"),
    "jobs": ("job_id", "type", "status", "entrypoint", "start_time", "end_time"),
    "metrics": ("name", "type", "tags", "value", "count"),
}
KINDS = tuple(BRIEF)

Filter = tuple[str, str, Any]
Fetch = Callable[[str], list[dict[str, Any]]]
DEFAULT_TIMEOUT = 30  # seconds, Ray's
logger = logging.getLogger(__name__)


class StateRow(dict[str, Any]):
    """One row of the state API: a dict (``row["state"]``, ``json.dumps(row)``) whose
    fields also read as attributes (``row.state``), so code written for Ray's
    ``TaskState`` / ``ActorState`` dataclasses, which read both ways, works unchanged."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"this state row has no field {name!r}; its fields: {', '.join(self)}"
            ) from None

    def asdict(self) -> dict[str, Any]:
        """A plain dict of the row (Ray's ``StateSchema.asdict``)."""
        return dict(self)


def _local_rows(kind: str) -> list[dict[str, Any]]:
    return session.client().state_rows(kind)


def _source(address: str | None, timeout: float, fetch: Fetch | None,
            explain: bool = False) -> Fetch:
    """This process's runtime when it has one and no ``address`` is given; else, as Ray's
    state API does, a runtime elsewhere: the head at ``address``, or with ``None`` /
    ``"auto"`` this machine's cluster, else its newest local driver (a script running its
    own core, see docs/observability.md). ``explain``: log each answer's size and time
    (Ray's ``_explain``; one core answers whole or fails, so there are no partial-answer
    warnings to print)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
    if fetch is not None:
        source = fetch
    elif address is None and context.current() is not None:
        source = _local_rows
    else:
        from actorlib.state_cli import remote_fetcher  # the composition root elsewhere

        source = remote_fetcher(None if address == "auto" else address, timeout=timeout)
    return _explained(source) if explain else source


def _explained(fetch: Fetch) -> Fetch:
    def explained(kind: str) -> list[dict[str, Any]]:
        start = time.perf_counter()
        answer = fetch(kind)
        logger.info("state API: %d %s rows in %.1f ms", len(answer), kind,
                    (time.perf_counter() - start) * 1000)
        return answer

    return explained


def rows(kind: str, fetch: Fetch | None = None) -> list[dict[str, Any]]:
    """Every row of ``kind`` (one of :data:`KINDS`), unfiltered."""
    if kind not in KINDS:
        raise ValueError(f"unknown state kind {kind!r}; expected one of {', '.join(KINDS)}")
    return (fetch or _local_rows)(kind)


def _check_filters(kind: str, filters: Sequence[Filter] | None) -> list[Filter]:
    out = []
    for item in filters or ():
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise ValueError(
                f"filters: each filter is a (key, operator, value) tuple, got {item!r}"
            )
        key, op, value = item
        if op not in OPERATORS:
            raise ValueError(
                f"filters: unknown operator {op!r} in {tuple(item)!r}; "
                f"expected one of {', '.join(repr(o) for o in OPERATORS)}"
            )
        out.append((key, op, value))
    return out


def _matches(row: dict[str, Any], filters: list[Filter]) -> bool:
    for key, op, value in filters:
        field = row.get(key)
        # Ray compares as strings, case-insensitively for states ("running" finds RUNNING).
        equal = str(field).lower() == str(value).lower()
        if equal != (op == "="):
            return False
    return True


def select(
    kind: str,
    all_rows: list[dict[str, Any]],
    filters: Sequence[Filter] | None = None,
    limit: int = DEFAULT_LIMIT,
    detail: bool = False,
    raise_on_missing_output: bool = True,
) -> list[StateRow]:
    """Filter, cut to ``limit`` and (without ``detail``) trim ``all_rows`` of ``kind``."""
    checked = _check_filters(kind, filters)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ValueError(f"limit: expected a non-negative int, got {limit!r}")
    fields = set(BRIEF[kind])
    if all_rows:
        fields |= set(all_rows[0])
    for key, _, _ in checked:
        if key not in fields:
            raise ValueError(
                f"filters: unknown key {key!r} for {kind}; expected one of "
                f"{', '.join(sorted(fields))}"
            )
    # ``raise_on_missing_output`` is Ray's guard against partial answers (nodes that did
    # not reply). One core answers here, whole or not at all (an error), so it never
    # applies; ended tasks past the ring's size are forgotten, as Ray's GCS forgets them.
    del raise_on_missing_output
    matched = [row for row in all_rows if _matches(row, checked)][:limit]
    if not detail:
        brief = BRIEF[kind]
        return [StateRow((k, row.get(k)) for k in brief) for row in matched]
    return [StateRow(row) for row in matched]


def _list(kind: str, address: str | None, filters: Sequence[Filter] | None, limit: int,
          timeout: float, detail: bool, raise_on_missing_output: bool, explain: bool,
          fetch: Fetch | None) -> list[StateRow]:
    source = _source(address, timeout, fetch, explain)
    return select(kind, rows(kind, source), filters, limit, detail, raise_on_missing_output)


def list_tasks(
    address: str | None = None, filters: Sequence[Filter] | None = None,
    limit: int = DEFAULT_LIMIT, timeout: float = DEFAULT_TIMEOUT, detail: bool = False,
    raise_on_missing_output: bool = True, _explain: bool = False, *,
    _fetch: Fetch | None = None,
) -> list[StateRow]:
    """Live tasks and actor calls, then the last ended ones (FINISHED / FAILED)."""
    return _list("tasks", address, filters, limit, timeout, detail, raise_on_missing_output,
                 _explain, _fetch)


def list_actors(
    address: str | None = None, filters: Sequence[Filter] | None = None,
    limit: int = DEFAULT_LIMIT, timeout: float = DEFAULT_TIMEOUT, detail: bool = False,
    raise_on_missing_output: bool = True, _explain: bool = False, *,
    _fetch: Fetch | None = None,
) -> list[StateRow]:
    """Actors the core knows, dead ones included (the last 1,000 forgotten ones too)."""
    return _list("actors", address, filters, limit, timeout, detail, raise_on_missing_output,
                 _explain, _fetch)


def list_objects(
    address: str | None = None, filters: Sequence[Filter] | None = None,
    limit: int = DEFAULT_LIMIT, timeout: float = DEFAULT_TIMEOUT, detail: bool = False,
    raise_on_missing_output: bool = True, _explain: bool = False, *,
    _fetch: Fetch | None = None,
) -> list[StateRow]:
    """Objects the core holds: pending and ready, with size, ref count and location."""
    return _list("objects", address, filters, limit, timeout, detail, raise_on_missing_output,
                 _explain, _fetch)


def list_nodes(
    address: str | None = None, filters: Sequence[Filter] | None = None,
    limit: int = DEFAULT_LIMIT, timeout: float = DEFAULT_TIMEOUT, detail: bool = False,
    raise_on_missing_output: bool = True, _explain: bool = False, *,
    _fetch: Fetch | None = None,
) -> list[StateRow]:
    """Nodes with their total and available resources."""
    return _list("nodes", address, filters, limit, timeout, detail, raise_on_missing_output,
                 _explain, _fetch)


def list_workers(
    address: str | None = None, filters: Sequence[Filter] | None = None,
    limit: int = DEFAULT_LIMIT, timeout: float = DEFAULT_TIMEOUT, detail: bool = False,
    raise_on_missing_output: bool = True, _explain: bool = False, *,
    _fetch: Fetch | None = None,
) -> list[StateRow]:
    """The processes that run tasks and actors, with what each runs now; the last 100
    that ended too (``is_alive`` False). On the thread and sim backends: one row, the
    driver's own process (``worker_type`` DRIVER), which runs everything."""
    return _list("workers", address, filters, limit, timeout, detail, raise_on_missing_output,
                 _explain, _fetch)


def list_placement_groups(
    address: str | None = None, filters: Sequence[Filter] | None = None,
    limit: int = DEFAULT_LIMIT, timeout: float = DEFAULT_TIMEOUT, detail: bool = False,
    raise_on_missing_output: bool = True, _explain: bool = False, *,
    _fetch: Fetch | None = None,
) -> list[StateRow]:
    """Placement groups, removed ones included (as Ray's table keeps them), with the
    node each bundle is reserved on (``detail=True``: ``bundles``)."""
    return _list("placement_groups", address, filters, limit, timeout, detail,
                 raise_on_missing_output, _explain, _fetch)


def list_jobs(
    address: str | None = None, filters: Sequence[Filter] | None = None,
    limit: int = DEFAULT_LIMIT, timeout: float = DEFAULT_TIMEOUT, detail: bool = False,
    raise_on_missing_output: bool = True, _explain: bool = False, *,
    _fetch: Fetch | None = None,
) -> list[StateRow]:
    """The driver jobs, oldest first: this runtime's own driver, or on a cluster every
    driver that connected (``SUCCEEDED`` once it left). Fields of Ray's ``JobDetails``."""
    return _list("jobs", address, filters, limit, timeout, detail, raise_on_missing_output,
                 _explain, _fetch)


def list_metrics(
    address: str | None = None, filters: Sequence[Filter] | None = None,
    limit: int = DEFAULT_LIMIT, timeout: float = DEFAULT_TIMEOUT, detail: bool = False,
    raise_on_missing_output: bool = True, _explain: bool = False, *,
    _fetch: Fetch | None = None,
) -> list[StateRow]:
    """The metrics of ``actorlib.util.metrics`` recorded so far anywhere in the runtime:
    a row per metric and tag set (a counter's total, a gauge's last value, a histogram's
    sum, with ``count``, ``boundaries`` and ``buckets`` under ``detail=True``). An
    actorlib extension: Ray exports its metrics to Prometheus only."""
    return _list("metrics", address, filters, limit, timeout, detail,
                 raise_on_missing_output, _explain, _fetch)


#: The shortest hex id: ``id_hex`` writes 16 digits, Ray's ids are longer.
_HEX_ID_DIGITS = 16
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _id_key(text: str) -> str:
    """What a getter compares of an id: a hex id (16 digits or more) in lower case, as
    Ray's getters find an id written in either case; anything else (a cluster node's
    name, a submission id) as it is, since names differ by case."""
    if len(text) >= _HEX_ID_DIGITS and _HEX_DIGITS.issuperset(text):
        return text.lower()
    return text


def _matching(kind: str, key: str, id_: str, address: str | None, timeout: float,
              explain: bool, fetch: Fetch | None) -> list[dict[str, Any]]:
    """The rows of ``kind`` whose ``key`` is ``id_`` (compared by :func:`_id_key`)."""
    if not isinstance(id_, str):
        raise TypeError(f"{key}: expected an id string, got {type(id_).__name__}")
    wanted = _id_key(id_)
    return [row for row in rows(kind, _source(address, timeout, fetch, explain))
            if row.get(key) is not None and _id_key(str(row[key])) == wanted]


def _get(kind: str, key: str, id_: str, address: str | None, timeout: float,
         fetch: Fetch | None, explain: bool = False) -> StateRow | None:
    found = _matching(kind, key, id_, address, timeout, explain, fetch)
    if not found:
        return None
    # A retried task is listed once per ended attempt: the latest attempt is the answer.
    # A worker id is one process's: its live row, if it is listed twice, is the answer.
    latest = max(found, key=lambda r: (int(r.get("attempt_number") or 0),
                                       bool(r.get("is_alive"))))
    return StateRow(latest)


def get_task(
    id: str | ObjectRef[Any], address: str | None = None, timeout: float = DEFAULT_TIMEOUT,
    _explain: bool = False, *, _fetch: Fetch | None = None,
) -> StateRow | None:
    """The task or actor call with hex id ``id``, or the one making the ref ``id`` (as
    Ray's takes either), at its latest attempt; None if unknown."""
    if isinstance(id, ObjectRef):
        task = id.task_id()
        if task.is_nil() and not id.is_nil():
            # A ref rebuilt from its id alone (``ObjectRef.from_hex``) does not carry its
            # task, which Ray reads off the id: the core's object table names it.
            found = _matching("objects", "object_id", id.hex(), address, timeout, _explain,
                              _fetch)
            producer = found[0].get("producer_id") if found else None
            if producer is None:  # a put, or an object the core no longer holds
                return None
            return _get("tasks", "task_id", producer, address, timeout, _fetch, _explain)
        id = task.hex()
    return _get("tasks", "task_id", id, address, timeout, _fetch, _explain)


def get_actor(
    id: str, address: str | None = None, timeout: float = DEFAULT_TIMEOUT,
    _explain: bool = False, *, _fetch: Fetch | None = None,
) -> StateRow | None:
    """The actor with hex id ``id``; None if unknown."""
    return _get("actors", "actor_id", id, address, timeout, _fetch, _explain)


def get_node(
    id: str, address: str | None = None, timeout: float = DEFAULT_TIMEOUT,
    _explain: bool = False, *, _fetch: Fetch | None = None,
) -> StateRow | None:
    """The node with id ``id`` (as ``list_nodes`` and ``actorlib.nodes()`` show it), every
    field; None if unknown."""
    return _get("nodes", "node_id", id, address, timeout, _fetch, _explain)


def get_worker(
    id: str, address: str | None = None, timeout: float = DEFAULT_TIMEOUT,
    _explain: bool = False, *, _fetch: Fetch | None = None,
) -> StateRow | None:
    """The worker process with hex id ``id`` (``list_workers``' ``worker_id``, the
    runtime context's ``get_worker_id()``), every field; None if unknown."""
    return _get("workers", "worker_id", id, address, timeout, _fetch, _explain)


def get_placement_group(
    id: str, address: str | None = None, timeout: float = DEFAULT_TIMEOUT,
    _explain: bool = False, *, _fetch: Fetch | None = None,
) -> StateRow | None:
    """The placement group with hex id ``id`` (``pg.id.hex()``), removed ones included,
    with its bundles; None if unknown."""
    return _get("placement_groups", "placement_group_id", id, address, timeout, _fetch,
                _explain)


def get_job(
    id: str, address: str | None = None, timeout: float = DEFAULT_TIMEOUT,
    _explain: bool = False, *, _fetch: Fetch | None = None,
) -> StateRow | None:
    """The driver job with id ``id``: its ``job_id`` (``get_runtime_context().get_job_id()``)
    or ``submission_id``; None if unknown. Ray looks up a submission id only, and only
    its job server's jobs have one; actorlib has no job server, so its jobs (drivers)
    are found by job id (``submission_id`` is None on each)."""
    if not isinstance(id, str):
        raise TypeError(f"job_id: expected an id string, got {type(id).__name__}")
    wanted = _id_key(id)
    for row in rows("jobs", _source(address, timeout, _fetch, _explain)):
        if any(row.get(key) is not None and _id_key(str(row[key])) == wanted
               for key in ("job_id", "submission_id")):
            return StateRow(row)
    return None


def get_objects(
    id: str, address: str | None = None, timeout: float = DEFAULT_TIMEOUT,
    _explain: bool = False, *, _fetch: Fetch | None = None,
) -> list[StateRow]:
    """The object with hex id ``id`` (``ref.hex()``) as a list of rows, every field: Ray
    lists an object once per place that references it; the core keeps one entry per
    object, so the list has one row, or none for an unknown (or freed) object. (Ray 2.x
    answers an unknown id with None, against its own documentation and type.)"""
    return [StateRow(row) for row in _matching("objects", "object_id", id, address, timeout,
                                               _explain, _fetch)]


def list_runtime_envs(
    address: str | None = None, filters: Sequence[Filter] | None = None,
    limit: int = DEFAULT_LIMIT, timeout: float = DEFAULT_TIMEOUT, detail: bool = False,
    raise_on_missing_output: bool = True, _explain: bool = False,
) -> list[StateRow]:
    """Not supported: Ray lists the runtime environments its per-node agents built
    (a row per node and environment, with a reference count and build errors); actorlib
    builds ``env_vars`` / ``working_dir`` / ``py_modules`` into each worker as it starts
    and keeps no table of them to list."""
    raise NotSupportedError(
        "list_runtime_envs: actorlib keeps no table of runtime environments (it sets "
        "each task's or actor's runtime_env up in the worker that runs it); inside one, "
        "get_runtime_context().runtime_env shows its own")


def list_cluster_events(
    address: str | None = None, filters: Sequence[Filter] | None = None,
    limit: int = DEFAULT_LIMIT, timeout: float = DEFAULT_TIMEOUT, detail: bool = False,
    raise_on_missing_output: bool = True, _explain: bool = False,
) -> list[dict[str, Any]]:
    """Not supported: Ray's cluster events come from its autoscaler and GCS event log
    (node added, worker died, out of memory); actorlib keeps no such log. What happened
    to a task, actor or node is in its row (``state``, ``death_cause``,
    ``exit_detail``)."""
    raise NotSupportedError(
        "list_cluster_events: actorlib keeps no cluster event log; list_nodes(), "
        "list_actors(detail=True) (death_cause) and list_workers(detail=True) "
        "(exit_detail) show what ended and why")


def summarize_tasks(
    address: str | None = None, timeout: float = DEFAULT_TIMEOUT,
    raise_on_missing_output: bool = True, _explain: bool = False, *,
    _fetch: Fetch | None = None,
) -> dict[str, Any]:
    """Tasks grouped by name, each with a count per state (Ray's ``summarize_tasks``)."""
    groups: dict[str, dict[str, Any]] = {}
    all_rows = rows("tasks", _source(address, timeout, _fetch, _explain))
    for row in all_rows:
        name = row["func_or_class_name"]
        group = groups.get(name)
        if group is None:
            group = groups[name] = {
                "func_or_class_name": name, "type": row["type"], "state_counts": {},
            }
        counts = group["state_counts"]
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return {"cluster": {"summary": groups, "total_tasks": len(all_rows)}}


def summarize_actors(
    address: str | None = None, timeout: float = DEFAULT_TIMEOUT,
    raise_on_missing_output: bool = True, _explain: bool = False, *,
    _fetch: Fetch | None = None,
) -> dict[str, Any]:
    """Actors grouped by class, each with a count per state (Ray's ``summarize_actors``)."""
    groups: dict[str, dict[str, Any]] = {}
    all_rows = rows("actors", _source(address, timeout, _fetch, _explain))
    for row in all_rows:
        name = row["class_name"]
        group = groups.setdefault(name, {"class_name": name, "state_counts": {}})
        counts = group["state_counts"]
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return {"cluster": {"summary": groups, "total_actors": len(all_rows)}}


def summarize_objects(
    address: str | None = None, timeout: float = DEFAULT_TIMEOUT,
    raise_on_missing_output: bool = True, _explain: bool = False, *,
    _fetch: Fetch | None = None,
) -> dict[str, Any]:
    """Objects counted by status, with their total size and spilled bytes."""
    all_rows = rows("objects", _source(address, timeout, _fetch, _explain))
    by_status = collections.Counter(row["task_status"] for row in all_rows)
    total = sum(row["object_size"] or 0 for row in all_rows)
    spilled = sum(row["object_size"] or 0 for row in all_rows if row["spilled"])
    return {"cluster": {
        "total_objects": len(all_rows), "total_size_bytes": total,
        "spilled_bytes": spilled, "status_counts": dict(by_status),
    }}


# == worker log files (Ray's list_logs / get_log) ==========================================

#: The category ``list_logs`` files worker logs under (a worker's stdout and stderr share
#: one file, ``worker-PID.log``).
LOG_CATEGORY = "worker"
_LOG_FILE = re.compile(r"worker-(\d+)\.log")


def list_logs(
    address: str | None = None, node_id: str | None = None, node_ip: str | None = None,
    glob_filter: str | None = None, timeout: float = DEFAULT_TIMEOUT, *,
    _fetch: Fetch | None = None,
) -> dict[str, list[str]]:
    """The worker log files, newest first, by category (Ray's form): ``{"worker":
    ["worker-123.log", ...]}``. A local driver keeps them with ``init(log_dir=...)``; a
    cluster's nodes always do. ``node_ip`` is not supported (pass ``node_id``)."""
    if node_ip is not None:
        raise NotSupportedError("list_logs(node_ip=): pass node_id (list_nodes() gives it)")
    files = _source(address, timeout, _fetch)("logs")
    names = [
        row["file"] for row in files
        if (node_id is None or row["node_id"] == node_id)
        and (glob_filter is None or fnmatch.fnmatch(row["file"], glob_filter))
    ]
    return {LOG_CATEGORY: names} if names else {}


def get_log(
    address: str | None = None, node_id: str | None = None, node_ip: str | None = None,
    filename: str | None = None, actor_id: str | None = None, task_id: str | None = None,
    pid: int | None = None, follow: bool = False, tail: int = 1000,
    timeout: float = DEFAULT_TIMEOUT, suffix: str = "out", *, _fetch: Fetch | None = None,
) -> Iterator[str]:
    """The last ``tail`` lines (``-1``: as many as one read returns, up to 1 MiB) of one
    worker's log, found by ``filename`` (from :func:`list_logs`), ``pid``, ``actor_id``
    (the process the actor runs in) or ``task_id`` (the process that ran it); lines
    without their newline, as Ray's ``get_log`` yields them. ``LookupError`` if there is
    no such log. ``suffix`` is accepted for Ray's signature: a worker's stdout and stderr
    share one file. ``follow=True``: after those lines, each line the worker adds, as it
    adds it (looked for every half second), until the worker has exited (then the
    iteration ends) or the caller stops iterating. ``node_ip`` is not supported."""
    if node_ip is not None:
        raise NotSupportedError("get_log(node_ip=): pass node_id (list_nodes() gives it)")
    if isinstance(tail, bool) or not isinstance(tail, int) or tail == 0 or tail < -1:
        raise ValueError(f"tail: expected a positive number of lines or -1, got {tail!r}")
    fetch = _source(address, timeout, _fetch)
    worker = _log_pid(fetch, filename, actor_id, task_id, pid)
    from actorlib.core.state import MAX_LOG_TAIL

    if follow:
        probe = fetch(f"log:{worker}:1")  # no such log: LookupError now, not at next()
        if node_id is not None:
            _check_node(probe, worker, node_id)

        def alive() -> bool:
            return any(row.get("pid") == worker and row.get("is_alive")
                       for row in fetch("workers"))

        from actorlib.util.log_follow import follow as follow_log

        return follow_log(fetch, worker, tail, MAX_LOG_TAIL, alive)
    rows = fetch(f"log:{worker}:{MAX_LOG_TAIL}")
    if node_id is not None:
        _check_node(rows, worker, node_id)
    lines = rows[0]["text"].splitlines() if rows else []
    return iter(lines if tail == -1 else lines[-tail:])


def _check_node(rows: list[dict[str, Any]], worker: int, node_id: str) -> None:
    if rows and rows[0].get("node_id") not in (None, node_id):
        raise LookupError(f"worker pid {worker} does not run on node {node_id}")


def _log_pid(fetch: Fetch, filename: str | None, actor_id: str | None,
             task_id: str | None, pid: int | None) -> int:
    given = [name for name, value in (("filename", filename), ("actor_id", actor_id),
                                      ("task_id", task_id), ("pid", pid)) if value is not None]
    if len(given) != 1:
        raise ValueError("get_log: pass exactly one of filename, actor_id, task_id and pid"
                         + (f" (got {', '.join(given)})" if given else ""))
    if filename is not None:
        match = _LOG_FILE.fullmatch(filename)
        if match is None:
            raise ValueError(f"filename: expected a name list_logs() gives, such as "
                             f"'worker-123.log', got {filename!r}")
        return int(match[1])
    if pid is not None:
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            raise ValueError(f"pid: expected a positive int, got {pid!r}")
        return pid
    if actor_id is not None:
        row = _get("actors", "actor_id", actor_id, None, DEFAULT_TIMEOUT, fetch)
        found = row.get("pid") if row else None
    else:
        row = _get("tasks", "task_id", str(task_id), None, DEFAULT_TIMEOUT, fetch)
        found = row.get("worker_pid") if row else None
    if not found:
        what = f"actor {actor_id}" if actor_id is not None else f"task {task_id}"
        raise LookupError(f"no worker process is known for {what}")
    return int(found)
