"""Strings that cross processes."""

from __future__ import annotations


def plain_str(value: str) -> str:
    """``value`` as an exact ``str``: a subclass (of the driver's ``__main__``, say) would
    travel in a message by reference, and a worker, a cluster's head or the driver
    without its class could not decode the message, so the work it carried, or the
    answer someone waits for, would be lost."""
    return value if type(value) is str else str.__str__(value)
