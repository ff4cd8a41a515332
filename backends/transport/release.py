"""What two processes of one cluster must share to understand each other's messages.

A driver, a head and its nodes exchange pickled records whose layout is the code of this
release (the records, their flat encodings, the specs inside them), and functions
pickled by value, which only the same Python minor version can load. Two peers that
differ there do not fail cleanly later: a frame the other side cannot decode is dropped
or fails only the work it carried, and a node could join and then lose every task sent
to it. So the handshake compares :func:`identity` and refuses a peer that differs,
naming both.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import sys

from actorlib.core.release import RELEASE

#: The modules whose code is the wire format: a change to any of them changes the digest.
WIRE_MODULES = (
    "actorlib.backends.transport.messages",
    "actorlib.backends.transport.codec",
    "actorlib.backends.transport.framing",
    "actorlib.core.specs",
    "actorlib.core.serialization",
)


@functools.cache
def identity() -> bytes:
    """``actorlib <release>, Python <major>.<minor>, wire <digest>`` (printable ASCII):
    the digest covers the source of :data:`WIRE_MODULES`, so two checkouts of one release
    whose messages differ are told apart too."""
    digest = hashlib.sha256()
    for name in WIRE_MODULES:
        spec = importlib.util.find_spec(name)  # the file, without importing the module
        origin = spec.origin if spec is not None else None
        try:
            with open(origin or "", "rb") as source:
                digest.update(source.read())
        except OSError:  # no source shipped: its name stands in
            digest.update(name.encode())
    version = sys.version_info
    return (
        f"actorlib {RELEASE}, Python {version.major}.{version.minor}, "
        f"wire {digest.hexdigest()[:12]}"
    ).encode("ascii")
