"""/search latency on the embedded default (window 100), cold and warm cache, in one run.

    python -m bench.search_latency [--queries 60] [--rounds 5] [--json out.json]

cold: each query's first request (pair-score cache empty; document embeddings were encoded at
start-up, as the embedded default does). warm: the same queries again (every pair cached).
Requests go over real HTTP to a sidecar served on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Any

import httpx

from bench.server import serving


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summarize(name: str, samples: list[float]) -> dict[str, Any]:
    return {
        "name": name,
        "n": len(samples),
        "p50_ms": percentile(samples, 50),
        "p95_ms": percentile(samples, 95),
        "p99_ms": percentile(samples, 99),
        "mean_ms": statistics.fmean(samples),
    }


def demo_queries(count: int) -> list[str]:
    from sidecar.demo import load_catalog, load_queries

    queries = [q["query"] for q in load_queries()]
    for product in load_catalog():  # shopper-like queries: the first words of titles
        words = product["title"].split(",")[0].split()[1:4]
        queries.append(" ".join(words).lower())
    return list(dict.fromkeys(queries))[:count]


def run(queries: int, rounds: int, window: int = 100) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sidecar.app import create_app
    from sidecar.config import Settings

    app = create_app(Settings(rules={"watch": False}), wait_for_model=True)
    texts = demo_queries(queries)
    cold: list[float] = []
    warm: list[float] = []
    statuses: dict[str, int] = {}
    with serving(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        _wait_for_catalog_warmup(client)
        for samples, repeat in ((cold, 1), (warm, rounds)):
            for _ in range(repeat):
                for text in texts:
                    started = time.perf_counter()
                    r = client.post(
                        "/search", json={"query": text, "window": window, "timeout_ms": 30_000}
                    )
                    samples.append((time.perf_counter() - started) * 1000)
                    r.raise_for_status()
                    status = r.json()["rerank_status"]
                    statuses[status] = statuses.get(status, 0) + 1
    return {
        "machine": _machine(),
        "window": window,
        "queries": len(texts),
        "results": [
            summarize("cold (pair cache empty)", cold),
            summarize("warm (all pairs cached)", warm),
        ],
        "rerank_status": statuses,
    }


def _wait_for_catalog_warmup(client: httpx.Client) -> None:
    # The embedded default encodes its catalog in the background after start-up; measure after
    # it, as a user meets the sidecar a few seconds after starting it.
    for _ in range(1200):
        if client.get("/readyz").json()["model"]["warmup"].get("state") in ("done", "none"):
            return
        time.sleep(0.25)


def _machine() -> dict[str, Any]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        f"/search, embedded default, window {report['window']}, "
        f"{report['queries']} queries, {report['machine']['cores']} cores",
        f"{'case':28s} {'n':>5s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s}",
    ]
    for row in report["results"]:
        lines.append(
            f"{row['name']:28s} {row['n']:5d} {row['p50_ms']:8.1f} "
            f"{row['p95_ms']:8.1f} {row['p99_ms']:8.1f}"
        )
    lines.append(f"rerank_status counts: {report['rerank_status']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the report as JSON here")
    args = parser.parse_args()
    report = run(args.queries, args.rounds)
    print(table(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
