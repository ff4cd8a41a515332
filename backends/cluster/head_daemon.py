"""The head as a process: ``actorlib start --head`` (and a private cluster) runs this.

It reads the token, starts a :class:`~actorlib.core.runtime.Runtime` on a
:class:`~actorlib.backends.cluster.head.HeadBackend`, serves the web dashboard when asked
(``--dashboard-port``), writes the ready file with the port it listens on (and the
dashboard's URL), and stops on a signal or, for a private cluster, when its driver is gone.

Run as ``python -m actorlib.backends.cluster.head_daemon``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
from typing import Any

from actorlib.backends.base import BackendConfig
from actorlib.backends.cluster.daemons import (
    add_driver_args,
    begin_daemon,
    handle_daemon_signals,
    wait_for_stop,
)
from actorlib.backends.cluster.head import HeadBackend
from actorlib.backends.transport import tokens
from actorlib.backends.transport.tls import TLSConfig
from actorlib.core.runtime import Runtime

log = logging.getLogger("actorlib.cluster")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m actorlib.backends.cluster.head_daemon")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--ready-file", help="written with the port once listening")
    add_driver_args(parser)
    parser.add_argument("--dashboard-host", default="127.0.0.1")
    parser.add_argument("--dashboard-port", type=int, help="serve the web dashboard here")
    args = parser.parse_args(argv)
    begin_daemon("head")
    token = tokens.resolve_token(token_file=args.token_file)
    backend = HeadBackend(token, args.host, args.port, TLSConfig.from_env())
    rt = Runtime(backend, BackendConfig(), "default")
    rt.start()
    stop = threading.Event()
    handle_daemon_signals(stop.set, args.driver_pid, args.driver_fd)
    log.info("actorlib head listening on %s:%d (pid %d)", args.host, backend.port, os.getpid())
    ready: dict[str, Any] = {"host": args.host, "port": backend.port, "pid": os.getpid()}
    dashboard = None
    if args.dashboard_port is not None:
        from actorlib.backends.dashboard import serve_head

        try:
            dashboard = serve_head(rt.state_rows, token, args.dashboard_host,
                                   args.dashboard_port, f"cluster head {args.host}:{backend.port}")
        except BaseException:
            rt.shutdown()
            raise
        ready["dashboard_url"] = dashboard.url
    if args.ready_file:
        tmp = f"{args.ready_file}.tmp"
        with open(tmp, "w") as f:
            json.dump(ready, f)
        os.replace(tmp, args.ready_file)
    wait_for_stop(stop)
    log.info("actorlib head stopping")
    if dashboard is not None:
        dashboard.stop()
    rt.shutdown()


if __name__ == "__main__":
    main()
