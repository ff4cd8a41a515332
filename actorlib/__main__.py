"""The actorlib command line."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Run the command line; a reader that goes away (``actorlib status | head``) is no
    error, and Ctrl-C ends it with one line and status 130."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # a broken pipe surfaces here, not at interpreter exit
    except BrokenPipeError:
        # Python's recipe: point stdout at devnull so the exit-time flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:  # Ctrl-C while waiting for a stuck driver: no traceback
        print("actorlib: interrupted", file=sys.stderr)
        return 130
    return code


def _main(argv: list[str] | None) -> int:
    import actorlib

    parser = argparse.ArgumentParser(prog="actorlib", description=__doc__)
    parser.add_argument("--version", action="version", version=f"actorlib {actorlib.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print actorlib's version")
    sub.add_parser("backends", help="list the backends and whether each loads here")
    bench = sub.add_parser(
        "bench", help="run the microbenchmark, side by side with Ray and the standard pools",
        description="Ray's microbenchmark workloads on actorlib and, with --against, on "
        "the alternatives; each target runs in a fresh process.",
    )
    from actorlib.bench import add_arguments

    add_arguments(bench)
    from actorlib import cluster_cli

    cluster_cli.add_arguments(sub)
    from actorlib import debug_cli, explore_cli, state_cli

    state_cli.add_arguments(sub)
    debug_cli.add_arguments(sub)
    explore_cli.add_arguments(sub)
    from actorlib import dashboard_cli

    dashboard_cli.add_arguments(sub)
    args = parser.parse_args(argv)
    if args.command in ("start", "stop", "status"):
        return cluster_cli.run(args)
    if args.command in state_cli.COMMANDS:
        return state_cli.run(args)
    if args.command in debug_cli.COMMANDS:
        return debug_cli.run(args)
    if args.command == dashboard_cli.COMMAND:
        return dashboard_cli.run(args)
    if args.command == "test-explore":
        return explore_cli.run(args)
    if args.command == "bench":
        from actorlib.bench import run

        return run(args, sys.argv[2:] if argv is None else argv[1:])
    if args.command == "version":
        print(actorlib.__version__)
        return 0
    from actorlib.backends import available, load

    for name, target in sorted(available().items()):
        try:
            load(name)
            status = "ok"
        except ImportError as exc:
            status = f"unavailable: {exc}"
        print(f"{name:10} {target:45} {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
