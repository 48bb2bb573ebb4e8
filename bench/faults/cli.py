"""`python -m bench.faults [--out DIR] [--seconds N] [--only SCENARIO[,SCENARIO]]`: run the
scenarios in order, print the table, write `<out>/faults.json` and `<out>/faults.png`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.faults import (
    engine_kill,
    fuzz,
    hostile,
    images,
    redis,
    remote,
    rules,
    slow_engine,
    vllm,
)
from bench.faults.common import CLIENTS, RESULTS, SLACK_MS, WINDOW, Options, Suite
from bench.faults.progress import progress
from bench.faults.report import Row, plot, skipped_row, table

# In the order they run: the embedded ones first (vllm, which starts its own model server, last
# of them), the engine ones (slow before kill) last.
SCENARIOS: dict[str, ModuleType] = {
    module.NAME: module
    for module in (redis, hostile, rules, fuzz, remote, images, vllm, slow_engine, engine_kill)
}


def parse_only(values: list[str] | None) -> list[str]:
    """Scenario names from repeated and comma-separated --only values, in suite order."""
    if not values:
        return list(SCENARIOS)
    wanted = {name.strip() for value in values for name in value.split(",") if name.strip()}
    unknown = wanted - set(SCENARIOS)
    if unknown:
        raise SystemExit(
            f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}"
        )
    return [name for name in SCENARIOS if name in wanted]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.faults", description="fault suite against real local processes"
    )
    p.add_argument("--out", type=Path, default=RESULTS, help=f"where to write (default {RESULTS})")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each load phase")
    p.add_argument(
        "--only",
        action="append",
        metavar="SCENARIO",
        help=f"run only these (repeat, or comma-separate): {', '.join(SCENARIOS)}",
    )
    p.add_argument("--engine", choices=["opensearch", "elasticsearch"], default="opensearch")
    p.add_argument(
        "--engine-state-dir",
        type=Path,
        default=Path("/tmp/faults-engines"),
        help="state dir of the engine this suite starts (and stops)",
    )
    p.add_argument("--fuzz-requests", type=int, default=1000, help="requests of the fuzz phase")
    p.add_argument("--seed", type=int, default=0, help="seed of the fuzz phase")
    p.add_argument(
        "--slack-ms",
        type=float,
        default=SLACK_MS,
        help=f"how far past timeout_ms an answer still counts as in time (default {SLACK_MS:g})",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    names = parse_only(args.only)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    options = Options(
        seconds=args.seconds,
        engine=args.engine,
        engine_state_dir=args.engine_state_dir,
        fuzz_requests=args.fuzz_requests,
        seed=args.seed,
        slack_ms=args.slack_ms,
    )
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "clients": CLIENTS,
        "window": WINDOW,
        "seconds": args.seconds,
        "slack_ms": args.slack_ms,
        "scenarios": names,
        "results": {},
    }
    rows: list[Row] = []
    suite = Suite(options)
    try:
        for name in names:
            began = time.monotonic()
            progress(f"=== {name}")
            module = SCENARIOS[name]
            try:
                result = module.run(suite)
            except Exception as exc:  # one broken scenario must not lose the others' report
                progress(f"{name}: FAILED to run: {type(exc).__name__}: {exc}")
                first_line = (str(exc).strip().splitlines() or [""])[0]
                result = {"error": f"{type(exc).__name__}: {first_line}", "passed": False}
            result["scenario_s"] = round(time.monotonic() - began, 1)
            report["results"][name] = result
            if "skipped" in result:
                rows.append(skipped_row(name, result["skipped"]))
            elif "error" in result:
                rows.append(Row(name, "-", "-", "-", "error: " + result["error"][:80], False))
            else:
                rows.extend(module.rows(result))
    finally:
        suite.close()
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    ran = {n: r for n, r in report["results"].items() if "error" not in r}
    plot(ran, {n: SCENARIOS[n].panel for n in names}, args.out / "faults.png")
    print(table(rows))
    print(f"wrote {args.out / 'faults.json'} and {args.out / 'faults.png'}")
    return 0 if all(row.passed is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
