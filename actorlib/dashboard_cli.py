"""``actorlib dashboard``: the web dashboard of a driver or cluster running elsewhere.

It serves the same page as ``init(dashboard=True)`` and ``actorlib start --head
--dashboard-port``, from this process, with rows fetched as ``actorlib list`` fetches
them (:func:`actorlib.state_cli.remote_fetcher`): from a local driver's state socket or
a cluster's head. It runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from actorlib import state_cli
from actorlib.backends import state_socket
from actorlib.backends.cluster import sessions
from actorlib.backends.dashboard import server
from actorlib.backends.transport import tokens

COMMAND = "dashboard"


def add_arguments(sub: Any) -> None:
    parser = sub.add_parser(COMMAND, help="serve the web dashboard of a running driver or "
                            "cluster, until Ctrl-C")
    state_cli.add_source_arguments(parser)
    parser.add_argument("--host", default=server.DEFAULT_HOST,
                        help=f"the interface to serve on (default {server.DEFAULT_HOST})")
    parser.add_argument("--port", type=int, help=f"the port (default {server.DEFAULT_PORT}, "
                        "or a free one if that is taken; 0: a free one)")


def _source(args: argparse.Namespace) -> str:
    """What the page's header says it shows (the choice ``remote_fetcher`` makes)."""
    if args.pid is None and (args.address or os.environ.get(sessions.ADDRESS_ENV)
                             or sessions.live_session()):
        return f"cluster {args.address or os.environ.get(sessions.ADDRESS_ENV) or 'auto'}"
    return f"local driver pid {state_socket.pid_of(state_socket.driver_socket(args.pid))}"


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; a failure to start is one line on stderr."""
    if args.port is not None and not 0 <= args.port < 65536:
        print(f"actorlib {COMMAND}: error: --port must be 0..65535, got {args.port}",
              file=sys.stderr)
        return 2
    try:
        fetch = state_cli.remote_fetcher(args.address, args.pid, args.token_file, args.timeout)
        source = _source(args)
        fetch("nodes")  # fail now, not in the browser, when nothing answers
        dashboard = server.start(fetch, host=args.host, port=args.port, source=source)
    except ValueError as exc:
        print(f"actorlib {COMMAND}: error: {exc}", file=sys.stderr)
        return 2
    except (ImportError, ConnectionError, OSError, tokens.AuthError) as exc:
        print(f"actorlib {COMMAND}: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"actorlib dashboard of {source} at {dashboard.url}", flush=True)
        print("  (keep the URL private: its token opens it; Ctrl-C stops)", flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        dashboard.stop()
    return 0
