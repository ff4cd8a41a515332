"""The ray backend's own checks: what it says when Ray is missing or unsupported.

Its behaviour is the shared suite's (``rt`` runs on "ray" where Ray is installed) and
``test_ray_multinode.py``'s; these need no running Ray.
"""

from __future__ import annotations

import socket
import sys

import pytest

import actorlib
from actorlib.backends.ray import address as address_check
from actorlib.backends.ray import connector
from actorlib.exceptions import BackendUnavailableError


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(BackendUnavailableError, match=r"pip install 'actorlib\[ray\]'"):
        actorlib.init(backend="ray")
    assert not actorlib.is_initialized()


def test_unsupported_ray_version_names_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = type(sys)("ray")
    fake.__version__ = "1.13.0"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "ray", fake)
    with pytest.raises(BackendUnavailableError, match=r"Ray >= 2\.9, < 3\.0; found 1\.13\.0"):
        connector.import_ray()


def test_backend_unavailable_is_an_import_error() -> None:
    # ``except ImportError`` around an optional backend keeps working.
    assert issubclass(BackendUnavailableError, ImportError)
    assert issubclass(BackendUnavailableError, actorlib.exceptions.ActorlibError)


# -- the address, checked before ray.init dials it (backends/ray/address.py) -------------


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_unreachable_address_fails_with_a_clear_error(scheme: str) -> None:
    ray = pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    address = f"{scheme}127.0.0.1:{_closed_port()}"
    # ray.init itself would retry for about ten minutes; the check gives up after its
    # timeout (the test's own timeout catches a hang).
    with pytest.raises(ConnectionError, match=r"Cannot reach the Ray cluster at .*nothing "
                       r"answered on (\S+ nor on )?127\.0\.0\.1:\d+ within 0\.5 s"):
        address_check.check_address(ray, address, timeout=0.5)


def test_malformed_address_is_a_value_error() -> None:
    ray = pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    with pytest.raises(ValueError, match="expected 'auto', 'host:port'"):
        address_check.check_address(ray, "no-port-here", timeout=0.5)


def test_a_loopback_only_cluster_keeps_its_loopback_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On Linux Ray swaps 127.0.0.1 for the machine's address, where a cluster started
    with ``--node-ip-address 127.0.0.1`` does not listen: the check keeps loopback."""
    ray = pytest.importorskip("ray", reason="needs Ray: pip install 'actorlib[ray]'")
    constants = ray._private.ray_constants
    monkeypatch.setattr(constants, "ENABLE_RAY_CLUSTER", True)  # Linux's default
    services = ray._private.services
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        swapped = services.canonicalize_bootstrap_address(address)
        address_check.check_address(ray, address, timeout=2)
        assert services.canonicalize_bootstrap_address(address) == address
        if swapped != address:  # a machine with an address of its own
            assert constants.ENABLE_RAY_CLUSTER is False
