"""All benchmarks in one run, one report: `python -m bench.run [--quick] [--engine elasticsearch]`.

Parts, side by side on this machine:
  1. /search end to end on the embedded default (and on a real engine when --engine is given and
     it can be started), cold and warm pair cache: p50/p95/p99 and throughput;
  2. the sidecar's own overhead per warm request: total minus the engine call and the model;
  3. the CPU scorer (per-document embedding cache) against the plain library baseline
     (sentence-transformers encoding the query and every document per request), same inputs;
  4. a concurrency sweep (1..64 clients, bounded request counts, 127.0.0.1 only);
  5. resident memory before and after many requests;
  6. the Lychee GPU benchmark when CUDA is present (skipped with a line saying so otherwise).
Results go to bench/results/latest.json and latest.png. Timing goals are read from the report:
warm overhead < 5 ms at window 100, warm scorer >= 10x the baseline, flat memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import httpx

from bench.search_latency import demo_queries, percentile, summarize
from bench.server import rss_mb, serving_process

RESULTS = Path(__file__).with_name("results")


def _timed_pass(
    client: httpx.Client, queries: list[str], repeat: int, overhead: list[float] | None = None
) -> tuple[list[float], float]:
    samples: list[float] = []
    started = time.perf_counter()
    for _ in range(repeat):
        for text in queries:
            t0 = time.perf_counter()
            r = client.post("/search", json={"query": text, "window": 100, "timeout_ms": 30_000})
            samples.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
            if overhead is not None:  # everything but the engine call and the model
                t = r.json()["timings"]
                overhead.append(t["total_ms"] - t["engine_ms"] - t.get("model_ms", 0.0))
    return samples, len(samples) / (time.perf_counter() - started)


def end_to_end(url: str, queries: list[str], rounds: int, label: str) -> dict[str, Any]:
    overhead: list[float] = []
    with httpx.Client(base_url=url, timeout=120) as client:
        cold, cold_qps = _timed_pass(client, queries, 1)
        warm, warm_qps = _timed_pass(client, queries, rounds, overhead)
    return {
        "engine": label,
        "cold": {**summarize("cold", cold), "qps": cold_qps},
        "warm": {**summarize("warm", warm), "qps": warm_qps},
        "overhead_warm": summarize("sidecar overhead (warm)", overhead),
    }


def scorer_vs_baseline(queries: list[str], rounds: int) -> dict[str, Any]:
    """Same query and 100 documents per request: ours (document embeddings cached) vs encoding
    the query and every document on each request, as a plain sentence-transformers loop does."""
    from sentence_transformers import SentenceTransformer

    from sidecar.demo import load_catalog
    from sidecar.documents import make_document
    from sidecar.scoring.minilm import MiniLMScorer, bundled_model_path

    products = load_catalog()[:100]
    docs = [make_document(p["id"], p["title"], p["selling_points"]) for p in products]
    texts = [d.text(512) for d in docs]
    ours = MiniLMScorer()
    asyncio.run(ours.load())
    ours.warm_documents(docs)
    baseline = SentenceTransformer(bundled_model_path(), device="cpu")
    fast: list[float] = []
    slow: list[float] = []
    for i in range(rounds):
        query = queries[i % len(queries)] + f" {i}"  # a new query each time: no query cache
        t0 = time.perf_counter()
        ours.score_sync(query, docs)
        fast.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        vectors = baseline.encode(
            [query, *texts], normalize_embeddings=True, show_progress_bar=False
        )
        _ = vectors[1:] @ vectors[0]
        slow.append((time.perf_counter() - t0) * 1000)
    ours_p50, base_p50 = percentile(fast, 50), percentile(slow, 50)
    return {
        "documents": len(docs),
        "ours": summarize("ours (warm)", fast),
        "baseline": summarize("sentence-transformers per request", slow),
        "speedup_p50": base_p50 / ours_p50 if ours_p50 else float("inf"),
    }


async def _load(
    url: str, clients: int, requests: int, queries: list[str], fresh: str = ""
) -> dict[str, Any]:
    """`requests` searches from `clients` concurrent clients. `fresh` (a tag): every query is
    new (tag, level and number appended), so each request needs the model; otherwise queries
    repeat (warm cache)."""
    latencies: list[float] = []
    counter = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for n in counter:
            t0 = time.perf_counter()
            text = queries[n % len(queries)] + (f" {fresh}{clients}n{n}" if fresh else "")
            r = await client.post(
                "/search", json={"query": text, "window": 100, "timeout_ms": 30_000}
            )
            r.raise_for_status()
            latencies.append((time.perf_counter() - t0) * 1000)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": len(latencies),
        "qps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
    }


def concurrency_sweep(
    url: str, queries: list[str], levels: list[int], per_level: int, fresh: str = ""
) -> list[dict[str, Any]]:
    return [
        asyncio.run(_load(url, clients, max(per_level, clients * 4), queries, fresh))
        for clients in levels
    ]


def memory(url: str, pid: int, queries: list[str], requests: int) -> dict[str, Any]:
    """The sidecar process's resident memory before and after `requests` searches."""
    before = rss_mb(pid)
    asyncio.run(_load(url, 8, requests, queries))
    after = rss_mb(pid)
    return {
        "requests": requests,
        "rss_before_mb": before,
        "rss_after_mb": after,
        "growth_mb": after - before,
    }


def gpu_part() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"skipped": "torch is not installed"}
    if not torch.cuda.is_available():
        return {
            "skipped": "no CUDA device on this machine: the Lychee GPU benchmark did not run "
            "(python -m bench.lychee_gpu runs it where a GPU is)"
        }
    from bench import lychee_gpu  # type: ignore[attr-defined]

    result: dict[str, Any] = lychee_gpu.run_all()
    return result


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    ax = axes[0]
    names, p50, p95 = [], [], []
    for e2e in (e for e in report["end_to_end"] if "skipped" not in e):
        for case in ("cold", "warm"):
            names.append(f"{e2e['engine']}\n{case}")
            p50.append(e2e[case]["p50_ms"])
            p95.append(e2e[case]["p95_ms"])
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], p50, 0.4, label="p50", color="#2f6fde")
    ax.bar([i + 0.2 for i in x], p95, 0.4, label="p95", color="#9aa5b1")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("ms (log)")
    ax.set_yscale("log")
    ax.set_title("/search latency, window 100")
    ax.legend()
    for ax, key, label, title in (
        (axes[1], "qps", "requests/s", "throughput"),
        (axes[2], "p95_ms", "p95 ms", "latency under load"),
    ):
        for sweep in report["concurrency"]:
            clients = [r["clients"] for r in sweep["levels"]]
            ax.plot(clients, [r[key] for r in sweep["levels"]], marker="o", label=sweep["name"])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(label)
        ax.set_title(title)
        ax.legend()
    fig.suptitle(
        f"rerank sidecar benchmarks — {report['machine']['cores']} cores, "
        f"{report['machine']['cpu']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(quick: bool, engine: str | None) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    n_queries, rounds = (30, 2) if quick else (80, 5)
    queries = demo_queries(n_queries)
    levels = [1, 2, 4, 8, 16, 32, 64]
    per_level = 64 if quick else 256
    report: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "end_to_end": [],
        "concurrency": [],
    }
    base = {"rules": {"watch": False}}
    print("== end to end, embedded default (sidecar in its own process)", flush=True)
    with serving_process(base) as (url, pid):
        report["end_to_end"].append(end_to_end(url, queries, rounds, "embedded"))
        print("== concurrency sweep: warm cache, then new queries (micro-batching on)", flush=True)
        report["concurrency"].append(
            {"name": "warm cache", "levels": concurrency_sweep(url, queries, levels, per_level)}
        )
        report["concurrency"].append(
            {
                "name": "new queries, micro-batching on",
                "levels": concurrency_sweep(url, queries, levels, per_level, fresh="on"),
            }
        )
        print("== memory", flush=True)
        report["memory"] = memory(url, pid, queries, 2_000 if quick else 10_000)
    print("== concurrency sweep: new queries, micro-batching off", flush=True)
    with serving_process({**base, "scorer": {"micro_batching": False}}) as (url, _):
        report["concurrency"].append(
            {
                "name": "new queries, micro-batching off",
                "levels": concurrency_sweep(url, queries, levels, per_level, fresh="off"),
            }
        )
    if engine:
        print(f"== end to end, {engine}", flush=True)
        report["end_to_end"].append(_engine_part(engine, queries, rounds))
    print("== CPU scorer vs sentence-transformers baseline", flush=True)
    report["scorer_vs_baseline"] = scorer_vs_baseline(queries, 20 if quick else 50)
    report["gpu"] = gpu_part()
    print(report["gpu"].get("skipped", "== GPU benchmark done"), flush=True)
    return report


def _engine_part(engine: str, queries: list[str], rounds: int) -> dict[str, Any]:
    """The same end-to-end run against a real engine started here (cached download). Its
    documents were never seen by the scorer, so "cold" here also encodes documents."""
    import tempfile

    from es_integration.engines import start, stop
    from sidecar.backends.indexing import index_catalog
    from sidecar.config import EngineSettings

    state = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    state.chmod(0o755)  # the engine runs as its own user, which must enter this folder
    try:
        node = start(engine, state)
    except Exception as exc:  # the engine part is optional: say why it was skipped
        return {"engine": engine, "skipped": f"could not start {engine}: {exc}"}
    try:
        fields = {"title": 3.0, "selling_points": 1.5, "brand.text": 2.0, "category.text": 1.0}
        index_catalog(EngineSettings(kind=engine, urls=[node["url"]]), recreate=True)
        settings = {
            "rules": {"watch": False},
            "engine": {"kind": engine, "urls": [node["url"]], "search_fields": fields},
        }
        with serving_process(settings) as (url, _):
            return end_to_end(url, queries, rounds, engine)
    finally:
        stop(engine, state)


def main() -> None:
    parser = argparse.ArgumentParser(description="rerank sidecar benchmarks, one report")
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument(
        "--engine",
        choices=["elasticsearch", "opensearch"],
        help="also run end to end against this real engine (started here)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = run(args.quick, args.engine)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    plot(report, args.out / "latest.png")
    print(json.dumps({k: v for k, v in report.items() if k != "concurrency"}, indent=1)[:4000])
    print(f"wrote {args.out / 'latest.json'} and {args.out / 'latest.png'}")


if __name__ == "__main__":
    main()
