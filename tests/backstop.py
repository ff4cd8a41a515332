"""A backstop behind pytest-timeout: a test still running well after its timeout ends the run.

pytest-timeout fires once per test. A test whose clean-up then waits for work nothing
will run (``with Executor(): ...`` whose calls never settle, a ``shutdown`` waiting on a
wedged worker) would hang the whole run until CI's own limit, with no word of where it
hung. This plugin's watchdog thread gives each test twice its timeout plus a grace
(``ACTORLIB_TEST_BACKSTOP_GRACE`` seconds, default 120); past that it prints every
thread's stack and ends the run with exit code 3, so CI fails in minutes and says where.

One thread for the whole run, started before any test, so the suite's thread-leak check
never sees it come or go.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
import time
from collections.abc import Generator
from typing import Any

import pytest

#: The exit code of a run the backstop ended (pytest's own codes are 0-5; 3 is
#: "internal error", which a run that had to be ended is).
EXIT_CODE = 3


def _grace() -> float:
    return float(os.environ.get("ACTORLIB_TEST_BACKSTOP_GRACE", "120"))


def _timeout_of(item: pytest.Item) -> float:
    """The test's pytest-timeout limit in seconds (0: none)."""
    marker = item.get_closest_marker("timeout")
    if marker is not None:
        value = marker.kwargs.get("timeout", marker.args[0] if marker.args else None)
        if value is not None:
            return float(value)
    return float(item.config.getini("timeout") or 0)


class _Watchdog:
    """Watches one test at a time: ``arm`` as it starts, ``disarm`` as it ends."""

    def __init__(self, config: pytest.Config) -> None:
        self._config = config
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._test = ""
        self._limit = 0.0
        threading.Thread(target=self._watch, name="test-backstop", daemon=True).start()

    def arm(self, test: str, limit: float) -> None:
        with self._cond:
            self._deadline = time.monotonic() + limit
            self._test, self._limit = test, limit
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None

    def _watch(self) -> None:
        with self._cond:
            while True:
                deadline = self._deadline
                if deadline is None:
                    self._cond.wait()
                    continue
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._end_run()

    def _end_run(self) -> None:
        capture: Any = self._config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture(in_=True)  # so what follows reaches the terminal
        sys.stderr.write(
            f"\n{'+' * 30} backstop {'+' * 30}\n{self._test} was still running "
            f"{self._limit:.0f} s after it started (twice its timeout plus "
            f"{_grace():.0f} s): ending the run. Every thread's stack:\n"
        )
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(EXIT_CODE)


_WATCHDOG = pytest.StashKey[_Watchdog]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_WATCHDOG] = _Watchdog(config)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[
    None, object, object
]:
    """Setup, call and teardown together: a hang in any of them is caught."""
    timeout = _timeout_of(item)
    watchdog = item.config.stash[_WATCHDOG]
    if timeout > 0:
        watchdog.arm(item.nodeid, 2 * timeout + _grace())
    try:
        return (yield)
    finally:
        watchdog.disarm()
