"""Rules rewritten under load: a sidecar watching a temporary rules file (every 0.2 s); under
load the file is rewritten 20 times, valid edits alternating with invalid files (bad YAML,
invalid UTF-8, wrong schema). Reports non-2xx during it, and checks that /readyz still says the
watcher runs and that the live version is the last valid file's."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.faults.common import (
    CLIENTS,
    Record,
    Suite,
    codes,
    non_2xx,
    p99,
    progress,
    search_load,
    status_counts,
    warm_up,
)
from bench.faults.report import Row
from bench.server import serving_process

NAME = "rules"
REWRITES = 20


def run(suite: Suite) -> dict[str, Any]:
    from sidecar.rules.loader import parse_rules
    from sidecar.rules.store import DEFAULT_RULES

    seconds = suite.options.seconds
    folder = Path(tempfile.mkdtemp(prefix="faults-rules-"))
    path = folder / "rules.yaml"
    default = DEFAULT_RULES.read_text(encoding="utf-8")
    path.write_text(default, encoding="utf-8")
    invalid: list[tuple[str, bytes]] = [
        ("bad YAML", b"version: 1\nblend: {model_weight: 0.8\n  engine_weight: [\n"),
        ("invalid UTF-8", default.encode() + b"\n# \xff\xfe broken\n"),
        ("wrong schema", b"version: 2\nblend:\n  model_weight: lots\nunknown_key: true\n"),
    ]
    settings = {
        "cache": {"kind": "memory"},
        "rules": {"path": str(path), "watch": True, "watch_interval_s": 0.2},
    }
    records: list[Record] = []
    writes: list[dict[str, Any]] = []
    last_valid = parse_rules(default, str(path)).version
    try:
        progress("rules: starting the sidecar (rules watched every 0.2 s)")
        with serving_process(settings) as (url, pid):
            progress(f"rules: sidecar pid {pid} on {url}; warming up")
            warm_up(url)

            async def rewriter(t0: float) -> None:
                nonlocal last_valid
                gap = seconds * 0.8 / REWRITES
                for i in range(REWRITES):
                    await asyncio.sleep(gap)
                    if i % 2 == 0:
                        weight = 0.8 - 0.01 * (i // 2)
                        text = default.replace(
                            "model_weight: 0.8", f"model_weight: {weight:.2f}"
                        ).replace("engine_weight: 0.2", f"engine_weight: {1 - weight:.2f}")
                        text += f"\n# edit {i}\n"
                        data, kind = text.encode(), "valid"
                        last_valid = parse_rules(text, str(path)).version
                    else:
                        kind, data = invalid[(i // 2) % len(invalid)]
                    with path.open("wb") as handle:  # in place, as an editor might
                        handle.write(data)
                    writes.append({"t": time.perf_counter() - t0, "kind": kind})

            async def main() -> None:
                t0 = time.perf_counter()
                await asyncio.gather(search_load(url, seconds, t0, records), rewriter(t0))

            progress(f"rules: {CLIENTS} clients of /search for {seconds:.0f}s, {REWRITES} rewrites")
            asyncio.run(main())
            time.sleep(1.0)  # a few watch intervals after the last write
            ready = httpx.get(f"{url}/readyz", timeout=10).json()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rules = ready.get("rules", {})
    ok = bool(rules.get("watching")) and rules.get("version") == last_valid
    result = {
        "requests": len(records),
        "non_2xx": non_2xx(records),
        "status_counts": status_counts(records),
        "p99_ms": {"during rewrites": p99(records)},
        "writes": writes,
        "readyz_rules": rules,
        "expected_version": last_valid,
        "watching_and_last_valid_live": ok,
        "passed": ok and not non_2xx(records),
        "records": records,
    }
    progress(
        f"rules: {len(records)} requests, non-2xx {result['non_2xx']}; watching "
        f"{rules.get('watching')}, live {rules.get('version')} (expected {last_valid}): "
        f"{'OK' if ok else 'FAIL'}"
    )
    return result


def rows(result: dict[str, Any]) -> list[Row]:
    return [
        Row(
            f"rules rewrite x{REWRITES}",
            str(result["requests"]),
            codes(result["non_2xx"]),
            f"during rewrites {result['p99_ms']['during rewrites']}",
            "watching, last valid live"
            if result["watching_and_last_valid_live"]
            else "live: " + str(result["readyz_rules"].get("version")),
            result["passed"],
        )
    ]


def panel(ax: Any, result: dict[str, Any]) -> None:
    records = result["records"]
    ok = [r for r in records if 200 <= r["status"] < 300]
    bad = [r for r in records if not 200 <= r["status"] < 300]
    ax.scatter([r["t"] for r in ok], [r["ms"] for r in ok], s=5, color="#2f6fde", label="2xx")
    if bad:
        ax.scatter(
            [r["t"] for r in bad], [r["ms"] for r in bad], s=8, color="#d9534f", label="not 2xx"
        )
    for i, write in enumerate(result["writes"]):
        valid = write["kind"] == "valid"
        ax.axvline(
            write["t"],
            color="#2a9d4b" if valid else "#d9534f",
            linestyle="-" if valid else ":",
            linewidth=0.8,
            label=("valid rewrite" if valid else "invalid rewrite") if i < 2 else None,
        )
    ax.set_yscale("log")
    ax.set_xlabel("seconds since load start")
    ax.set_ylabel("/search ms (log)")
    ax.set_title(f"rules file rewritten {REWRITES} times under load")
    ax.legend(fontsize=7)
