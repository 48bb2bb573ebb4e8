"""What the hybrid first stage's vector leg adds to a search, per engine.

    python -m bench.hybrid_latency [--engine embedded|elasticsearch|opensearch --url URL]
                                   [--queries 60] [--rounds 5] [--json out.json]

Each demo query runs through the first stage (`Pipeline.retriever`, window 100) lexical alone
and hybrid (both legs at once, RRF), `rounds` times in turn, in process; the sidecar's HTTP and
the reranking are left out, since they are the same either way. Reported per case: p50 and p95
of the whole first stage, of the added milliseconds (hybrid minus lexical, per query and round),
and of the vector leg itself (the query's vector and the k-NN search). `cold` is each query's
first hybrid search (its vector encoded), `warm` the rounds after (the vector from the scorer's
query cache, as scoring leaves it). For Elasticsearch and OpenSearch the demo catalog is loaded
with its vectors into the index `bench-hybrid` first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any

from bench.search_latency import demo_queries, percentile

INDEX = "bench-hybrid"


def _row(name: str, samples: list[float]) -> dict[str, Any]:
    return {
        "name": name,
        "n": len(samples),
        "p50_ms": percentile(samples, 50),
        "p95_ms": percentile(samples, 95),
    }


async def measure(engine: str, url: str | None, queries: int, rounds: int) -> dict[str, Any]:
    from sidecar.config import Settings
    from sidecar.deadline import Deadline
    from sidecar.wiring import give_vectors, loaded_services

    overrides: dict[str, Any] = {"rules": {"watch": False}, "hybrid": {"enabled": True}}
    index = "products"
    if engine != "embedded":
        overrides["engine"] = {"kind": engine, "urls": [url], "allowed_indices": ["*"]}
        index = INDEX
    settings = Settings(**overrides)
    if engine != "embedded":
        await asyncio.to_thread(_load_engine, settings, engine)
    async with loaded_services(settings) as services:
        await give_vectors(services)  # the embedded engine's vectors, as its start-up gives them
        retriever = services.pipeline.retriever
        unavailable = await retriever.unavailable(index)
        if unavailable is not None:
            raise SystemExit(f"hybrid is unavailable: {unavailable}")
        texts = demo_queries(queries)
        lexical: list[float] = []
        hybrid: list[float] = []
        added: list[float] = []
        vector_cold: list[float] = []
        vector_warm: list[float] = []
        for round_ in range(rounds + 1):
            for text in texts:
                times = {}
                for mode in ("lexical", "hybrid"):
                    started = time.perf_counter()
                    got = await retriever.search(
                        index, text, [], 100, Deadline.after(30), asked=mode
                    )
                    times[mode] = (time.perf_counter() - started) * 1000
                    if mode == "hybrid":
                        if got.retrieval != "hybrid":
                            raise SystemExit(f"{text!r}: {got.reason}")
                        (vector_cold if round_ == 0 else vector_warm).append(
                            got.timings["vector_ms"]
                        )
                if round_ == 0:
                    continue  # the cold round: the query vectors are encoded
                lexical.append(times["lexical"])
                hybrid.append(times["hybrid"])
                added.append(times["hybrid"] - times["lexical"])
    return {
        "engine": engine,
        "window": 100,
        "queries": len(texts),
        "rounds": rounds,
        "cores": os.cpu_count(),
        "results": [
            _row("first stage, lexical", lexical),
            _row("first stage, hybrid (warm)", hybrid),
            _row("added by hybrid (warm)", added),
            _row("vector leg, cold query", vector_cold),
            _row("vector leg, warm query", vector_warm),
        ],
    }


def _load_engine(settings: Any, engine: str) -> None:
    from sidecar.backends.indexing import index_catalog
    from sidecar.operations.embed import engine_vectors

    vectors, scorer = asyncio.run(engine_vectors(settings, engine))
    try:
        index_catalog(settings.engine, index=INDEX, recreate=True, progress=False, vectors=vectors)
    finally:
        asyncio.run(scorer.close())


def table(report: dict[str, Any]) -> str:
    lines = [
        f"hybrid first stage on {report['engine']}, window {report['window']}, "
        f"{report['queries']} queries x {report['rounds']} rounds, {report['cores']} cores",
        f"{'case':30s} {'n':>5s} {'p50 ms':>8s} {'p95 ms':>8s}",
    ]
    for row in report["results"]:
        lines.append(f"{row['name']:30s} {row['n']:5d} {row['p50_ms']:8.2f} {row['p95_ms']:8.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--engine", choices=["embedded", "elasticsearch", "opensearch"], default="embedded"
    )
    parser.add_argument("--url", help="the engine's URL (elasticsearch, opensearch)")
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the report as JSON here")
    args = parser.parse_args()
    if args.engine != "embedded" and not args.url:
        parser.error("--url is needed for elasticsearch and opensearch")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report = asyncio.run(measure(args.engine, args.url, args.queries, args.rounds))
    print(table(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
