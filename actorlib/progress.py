"""``actorlib.progress``: iterate completions with a progress bar (tqdm).

The bar is drawn on stderr and turned off automatically when stderr is not a terminal
(logs, CI, pytest), so leaving ``progress`` in a script costs nothing there. In a Jupyter
kernel stderr is no terminal either, yet the bar shows: as a widget (``tqdm.auto``) where
``ipywidgets`` is installed, else as text in the cell's output.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import concurrent.futures

# The API and the ref type are imported when first needed: ``import actorlib`` binds
# ``progress`` eagerly (its module's name is the function's), so this module stays light.

__all__ = ["make_bar", "progress"]

T = TypeVar("T")


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def in_jupyter_kernel() -> bool:
    """Whether this process is a Jupyter (ipykernel) kernel running IPython.

    Looked up in ``sys.modules`` only: a script that never imported IPython pays nothing.
    """
    if "ipykernel" not in sys.modules:
        return False
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if get_ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def _has_widgets() -> bool:
    import importlib.util

    return importlib.util.find_spec("ipywidgets") is not None


_bar_classes: dict[bool, Any] = {}


def _bar_class(widget: bool) -> Any:
    cls = _bar_classes.get(widget)
    if cls is None:
        if widget:
            from tqdm.auto import tqdm
        else:
            from tqdm import tqdm
        # No monitor thread: it would outlive the bar (and serves only stalled bars).
        cls = _bar_classes[widget] = type("ActorlibBar", (tqdm,), {"monitor_interval": 0})
    return cls


def make_bar(total: int | None, desc: str | None = None) -> Any:
    """A tqdm bar: on stderr where stderr is a terminal, in the notebook in a Jupyter
    kernel (a widget, or text without ``ipywidgets``), else disabled."""
    if in_jupyter_kernel():
        if _has_widgets():
            return _bar_class(True)(total=total, desc=desc)
        return _bar_class(False)(total=total, desc=desc, file=sys.stderr)
    return _bar_class(False)(
        total=total, desc=desc, disable=not _stderr_is_terminal(), file=sys.stderr
    )


def progress(
    refs_or_futures: Iterable[T], *, total: int | None = None, desc: str | None = None
) -> Iterator[T]:
    """Yield ``ObjectRef``s and/or ``concurrent.futures.Future``s as they complete.

    Each completion advances the bar. Any other iterable (for example the iterator of
    ``Executor.map``) is passed through in its own order, one step per item.
    ``total`` defaults to ``len(refs_or_futures)`` when it has one.
    """
    import concurrent.futures

    from actorlib.core.refs import ObjectRef

    items: Any = refs_or_futures
    if isinstance(items, (list, tuple, set, frozenset)) and items and all(
        isinstance(x, (ObjectRef, concurrent.futures.Future)) for x in items
    ):
        return _completions(list(items), total, desc)
    if total is None:
        try:
            total = len(items)
        except TypeError:
            total = None
    return _passthrough(items, total, desc)


def _completions(items: list[Any], total: int | None, desc: str | None) -> Iterator[Any]:
    import concurrent.futures

    from actorlib.api import as_completed
    from actorlib.core.refs import ObjectRef

    bar = make_bar(len(items) if total is None else total, desc)
    try:
        if all(isinstance(x, ObjectRef) for x in items):
            for ref in as_completed(items):
                bar.update(1)
                yield ref
        else:
            by_future: dict[concurrent.futures.Future[Any], Any] = {}
            for x in items:
                by_future[x.future() if isinstance(x, ObjectRef) else x] = x
            for future in concurrent.futures.as_completed(by_future):
                bar.update(1)
                yield by_future[future]
    finally:
        bar.close()


def _passthrough(items: Iterable[Any], total: int | None, desc: str | None) -> Iterator[Any]:
    bar = make_bar(total, desc)
    try:
        for item in items:
            bar.update(1)
            yield item
    finally:
        bar.close()
