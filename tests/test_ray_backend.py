"""The ray backend's own checks: what it says when Ray is missing or unsupported.

Its behaviour is the shared suite's (``rt`` runs on "ray" where Ray is installed) and
``test_ray_multinode.py``'s; these need no running Ray.
"""

from __future__ import annotations

import sys

import pytest

import actorlib
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
