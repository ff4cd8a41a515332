"""``actorlib.progress`` in a real Jupyter kernel: the bar shows though stderr is no TTY.

A kernel's stderr is ipykernel's stream, which says it is not a terminal; a bar that went
by ``isatty()`` alone stayed off in every notebook. The kernel here is a real one
(``jupyter_client`` starts ``ipykernel`` in a child process), run without ``ipywidgets``,
so the bar arrives as text on the cell's stderr stream.
"""

from __future__ import annotations

import importlib
import queue
from typing import Any

import pytest

# ``actorlib.progress`` is also the function of that name, bound by ``import actorlib``.
progress_module = importlib.import_module("actorlib.progress")

pytest.importorskip("ipykernel")
manager_module = pytest.importorskip("jupyter_client.manager")

pytestmark = pytest.mark.slow  # starts a kernel interpreter

CELL = """
import importlib
import actorlib
actorlib.init(backend="thread", num_cpus=2)

@actorlib.remote
def square(x):
    return x * x

print("in kernel:", importlib.import_module("actorlib.progress").in_jupyter_kernel())
print("results:", sorted(actorlib.get(list(actorlib.progress(
    [square.remote(i) for i in range(7)], desc="squares")))))
actorlib.shutdown()
"""


def _run_cell(code: str, timeout: float = 120.0) -> tuple[str, str, list[dict[str, Any]]]:
    """Run ``code`` in a fresh kernel: its stdout, its stderr and any error replies."""
    km, kc = manager_module.start_new_kernel(
        kernel_name="python3", env=_kernel_env(), startup_timeout=120
    )
    out: list[str] = []
    err: list[str] = []
    errors: list[dict[str, Any]] = []
    try:
        msg_id = kc.execute(code)
        while True:
            try:
                msg = kc.get_iopub_msg(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"the kernel said nothing for {timeout} s") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                (out if content["name"] == "stdout" else err).append(content["text"])
            elif kind == "error":
                errors.append(content)
            elif kind == "status" and content["execution_state"] == "idle":
                break
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    return "".join(out), "".join(err), errors


def _kernel_env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["JUPYTER_PLATFORM_DIRS"] = "1"  # no deprecation warning from jupyter_core
    return env


def test_the_bar_shows_in_a_jupyter_kernel() -> None:
    out, err, errors = _run_cell(CELL)
    assert not errors, errors
    assert "in kernel: True" in out
    assert "results: [0, 1, 4, 9, 16, 25, 36]" in out
    # tqdm's text bar, drawn on the kernel's stderr stream: its description and the end.
    assert "squares" in err and "7/7" in err, err


def test_outside_a_kernel_a_non_terminal_stderr_gets_no_bar(capsys: Any) -> None:
    assert not progress_module.in_jupyter_kernel()
    bar = progress_module.make_bar(3, "quiet")
    try:
        assert bar.disable
    finally:
        bar.close()
    assert capsys.readouterr().err == ""
