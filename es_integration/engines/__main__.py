"""CLI: python -m es_integration.engines start|stop|status ..."""

import argparse
import json
import sys

from .local import DEFAULT_STATE_DIR, ENGINES, START_TIMEOUT_S, EngineError, start, status, stop
from .plugins import PLUGIN_SETS


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "start":
            state = start(args.engine, args.state_dir, args.version, args.timeout, args.plugins)
            print(json.dumps(state))
        elif args.command == "stop":
            stopped = stop(args.engine, args.state_dir)
            print(f"{args.engine}: {'stopped' if stopped else 'was not running'}", file=sys.stderr)
        else:
            for state in status(args.state_dir):
                print(json.dumps(state))
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # start() has already stopped what it launched
        return 130
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m es_integration.engines",
        description="Run a local single-node Elasticsearch or OpenSearch.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop", "status"):
        sub = commands.add_parser(name)
        if name != "status":
            sub.add_argument("engine", choices=sorted(ENGINES))
        sub.add_argument(
            "--state-dir",
            default=DEFAULT_STATE_DIR,
            help=f"where engines are unpacked and run (default: ./{DEFAULT_STATE_DIR})",
        )
        if name == "start":
            sub.add_argument("--version", help="engine version (default: the pinned one)")
            sub.add_argument(
                "--timeout",
                type=float,
                default=START_TIMEOUT_S,
                help=f"seconds to wait for yellow health (default: {START_TIMEOUT_S:.0f})",
            )
            sub.add_argument(
                "--plugins",
                action="append",
                default=[],
                choices=sorted(PLUGIN_SETS),
                help="OpenSearch only: install a plugin set before the first start; `ml`: "
                "job-scheduler, ml, knn, neural-search (the rerank processor), from Maven "
                "Central. A refused download starts the node without them and says so in the "
                "printed state (plugins_missing)",
            )
    return parser


if __name__ == "__main__":
    sys.exit(main())
