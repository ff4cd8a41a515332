"""Check a Ray cluster's address before ``ray.init`` dials it.

``ray.init(address=...)`` on an address where nothing answers does not fail: it retries
for about ten minutes (20 tries of 30 s each). And on Linux Ray replaces a loopback host
(``127.0.0.1``) with this machine's own address, so a cluster started on loopback
(``ray start --head --node-ip-address 127.0.0.1``) is dialled where it does not listen,
and ``ray.init`` hangs the same way, unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` was in
the environment when Ray was first imported. Here the address Ray will dial is probed
first: a loopback-only cluster keeps its loopback address, and an address where nothing
answers fails within :data:`CONNECT_TIMEOUT_S` with a message that says so.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any

#: How long ``init(backend="ray", address=...)`` waits for the cluster to answer.
CONNECT_TIMEOUT_S = 20.0


def _split(address: str) -> tuple[str, int] | None:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def answers(hosts: list[tuple[str, int]], timeout: float) -> tuple[str, int] | str:
    """The first of ``hosts`` that accepts a TCP connection within ``timeout`` seconds
    (a cluster still starting gets that long), else the last error."""
    deadline = time.monotonic() + timeout
    error = "no attempt"
    while True:
        for host in hosts:
            left = deadline - time.monotonic()
            try:
                with socket.create_connection(host, timeout=max(min(left, 2.0), 0.1)):
                    return host
            except OSError as exc:
                error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() + 0.2 >= deadline:
            return error
        time.sleep(0.2)


def check_address(ray: Any, address: str, timeout: float | None = None) -> None:
    """Make sure ``ray.init(address=address)`` reaches a cluster, or raise
    ``ConnectionError`` saying why not, within ``timeout`` seconds (default
    :data:`CONNECT_TIMEOUT_S`).

    ``ray://`` addresses (Ray Client) are probed as given; others as Ray will dial them.
    """
    if timeout is None:
        timeout = CONNECT_TIMEOUT_S
    if address.startswith("ray://"):
        target = _split(address[len("ray://"):].split("/", 1)[0])
        if target is None:
            raise ValueError(f"address={address!r}: expected ray://host:port")
        found = answers([target], timeout)
        if isinstance(found, str):
            raise ConnectionError(_unreachable(address, [target], found, timeout))
        return
    given = None if address == "auto" else _split(address)
    if address != "auto" and given is None:
        raise ValueError(f"address={address!r}: expected 'auto', 'host:port' or "
                         "'ray://host:port'")
    dialled = ray._private.services.canonicalize_bootstrap_address(address)
    if dialled is None:  # "auto" found no cluster: ray.init says so itself
        return
    target = _split(dialled)
    assert target is not None
    hosts = [target]
    if given is not None and _is_loopback(given[0]) and not _is_loopback(target[0]):
        hosts.append(given)  # Ray swapped loopback for this machine's address
    found = answers(hosts, timeout)
    if isinstance(found, str):
        raise ConnectionError(_unreachable(address, hosts, found, timeout))
    if found != target:
        # A cluster listening on loopback only: keep loopback, as
        # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 does (Ray reads it only at its first import).
        ray._private.ray_constants.ENABLE_RAY_CLUSTER = False


def _unreachable(address: str, hosts: list[tuple[str, int]], error: str,
                 timeout: float) -> str:
    where = " nor on ".join(f"{h}:{p}" for h, p in hosts)
    return (
        f"Cannot reach the Ray cluster at {address!r}: nothing answered on {where} "
        f"within {timeout:g} s ({error}). Is Ray running there (ray start --head), "
        "and is that its GCS port (or, for ray://, its Ray Client port, 10001 by default)?"
    )
