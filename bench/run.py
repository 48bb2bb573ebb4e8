"""All benchmarks in one run, one report: `python -m bench.run [--quick] [--engine elasticsearch]`.

Parts, side by side on this machine (every sidecar in a process of its own):
  1. /search end to end on the embedded default, cold and warm pair cache: p50/p95/p99 and
     throughput, and the sidecar's own work per warm request (total minus engine and model);
  2. with --engine (started here, the demo catalog loaded), cold p95 on that engine for
     (a) a fresh sidecar on an empty cache, (b) a fresh sidecar on a Redis that another
     replica filled (cache.kind redis; a redis-server started on 127.0.0.1): the filling replica
     served the queries once; the fresh one serves them with another instruction, so every
     pair score is a miss and only the documents' embeddings come from Redis (and, apart, the
     same queries, whose pair scores Redis holds too);
     and the added latency over the engine alone at window 100, warm (bench.engine_overhead:
     /search and the drop-in, p50);
  3. the batching sweep: new-query throughput (every query new, so every request needs the
     model) with micro-batching on and off, at 1..32 clients, on the embedded default;
  4. a memory run: distinct queries (and every product of the catalog) until the caches are
     full at their bounds (the pair-score cache bounded for the run), resident memory sampled
     along the way: it must level off;
  5. the CPU scorer (per-document embedding cache) against the plain library baseline;
  6. the hybrid first stage's vector leg: what it adds to /search end to end on the embedded
     default (each query lexical and hybrid in turn, warm), and to the first stage alone on the
     embedded engine and, with --engine, on that engine (bench.hybrid_latency);
  7. the Lychee GPU benchmark when CUDA is present (skipped with a line saying so otherwise).

Answers are counted by `rerank_status`: a `partial` or `fallback` answer is counted apart and
never as a success (latencies and throughput are over `ok` answers only).

Results go to bench/results/latest.json and latest.png. The goals are read from the report as
pass/fail lines (`bench.run_report`, which draws the figure too): cold p95 (b) <= 100 ms, added
p50 <= 1.5 ms, batching >= 3x at 32 clients, RSS flat once the caches are full. They are meant
for a quiet 2-core machine: on a shared one the absolute figures are noise, the ratios less so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.run_report import goals, plot
from bench.search_latency import demo_queries, percentile, summarize
from bench.server import rss_mb, serving_process

RESULTS = Path(__file__).with_name("results")
LEVELS = [1, 2, 4, 8, 16, 32]
SEARCH_FIELDS = {"title": 3.0, "selling_points": 1.5, "brand.text": 2.0, "category.text": 1.0}
# The fresh replica's instruction in part 2 (b): another pair-score key for the same query and
# products (MiniLM does not read it), so Redis can give it only the documents' embeddings.
OTHER_INSTRUCTION = "Rank the products for this shopper's search."


class Statuses(Counter[str]):
    """Answers by rerank_status (`ok`, `partial`, `fallback`; `error` for a failed request)."""

    def ok(self) -> int:
        return self["ok"]


def _search(
    client: httpx.Client,
    text: str,
    statuses: Statuses,
    instruction: str | None = None,
    retrieval: str | None = None,
) -> tuple[float, dict[str, Any] | None]:
    """(milliseconds, the answer when it is `ok`): other answers are counted, not returned."""
    body: dict[str, Any] = {"query": text, "window": 100, "timeout_ms": 30_000}
    if instruction is not None:
        body["instruction"] = instruction
    if retrieval is not None:
        body["retrieval"] = retrieval
    t0 = time.perf_counter()
    r = client.post("/search", json=body)
    elapsed = (time.perf_counter() - t0) * 1000
    if r.status_code != 200:
        statuses["error"] += 1
        return elapsed, None
    answer: dict[str, Any] = r.json()
    statuses[answer.get("rerank_status", "unknown")] += 1
    return elapsed, answer if answer.get("rerank_status") == "ok" else None


def _timed_pass(
    client: httpx.Client,
    queries: list[str],
    repeat: int,
    statuses: Statuses,
    overhead: list[float] | None = None,
    instruction: str | None = None,
) -> tuple[list[float], float]:
    samples: list[float] = []
    started = time.perf_counter()
    for _ in range(repeat):
        for text in queries:
            elapsed, answer = _search(client, text, statuses, instruction)
            if answer is None:
                continue  # partial, fallback or failed: counted apart
            samples.append(elapsed)
            if overhead is not None:  # everything but the engine call and the model
                t = answer["timings"]
                overhead.append(t["total_ms"] - t["engine_ms"] - t.get("model_ms", 0.0))
    return samples, len(samples) / (time.perf_counter() - started)


def _summary(name: str, samples: list[float], statuses: Statuses) -> dict[str, Any]:
    base = summarize(name, samples) if samples else {"name": name, "n": 0}
    return {**base, "statuses": dict(statuses)}


def end_to_end(url: str, queries: list[str], rounds: int, label: str) -> dict[str, Any]:
    overhead: list[float] = []
    cold_statuses, warm_statuses = Statuses(), Statuses()
    with httpx.Client(base_url=url, timeout=120) as client:
        cold, cold_qps = _timed_pass(client, queries, 1, cold_statuses)
        warm, warm_qps = _timed_pass(client, queries, rounds, warm_statuses, overhead)
    return {
        "engine": label,
        "cold": {**_summary("cold", cold, cold_statuses), "qps": cold_qps},
        "warm": {**_summary("warm", warm, warm_statuses), "qps": warm_qps},
        "overhead_warm": summarize("sidecar overhead (warm)", overhead) if overhead else {},
    }


def hybrid_end_to_end(url: str, queries: list[str], rounds: int) -> dict[str, Any]:
    """Warm /search with each query lexical then hybrid (`retrieval` per request), so both see
    the same load: p50/p95 of each and of the difference per query and round. A hybrid answer
    whose vector leg did not run is counted apart (`retrieval_not_hybrid`), not as hybrid."""
    statuses = {"lexical": Statuses(), "hybrid": Statuses()}
    samples: dict[str, list[float]] = {"lexical": [], "hybrid": []}
    added: list[float] = []
    not_hybrid = 0
    with httpx.Client(base_url=url, timeout=120) as client:
        for round_ in range(rounds + 1):  # round 0 warms the pair scores and query vectors
            for text in queries:
                times: dict[str, float] = {}
                for mode in ("lexical", "hybrid"):
                    elapsed, answer = _search(client, text, statuses[mode], retrieval=mode)
                    if answer is None:
                        continue
                    if answer["retrieval"]["mode"] != mode:
                        not_hybrid += 1
                        continue
                    times[mode] = elapsed
                if round_ == 0 or len(times) < 2:
                    continue
                for mode, elapsed in times.items():
                    samples[mode].append(elapsed)
                added.append(times["hybrid"] - times["lexical"])
    return {
        "lexical": _summary("/search lexical (warm)", samples["lexical"], statuses["lexical"]),
        "hybrid": _summary("/search hybrid (warm)", samples["hybrid"], statuses["hybrid"]),
        "added": summarize("added by the vector leg", added) if added else {"n": 0},
        "retrieval_not_hybrid": not_hybrid,
    }


def hybrid_part(url: str, queries: list[str], rounds: int) -> dict[str, Any]:
    """The vector leg's cost on the embedded default: end to end through the sidecar at `url`,
    and in the first stage alone (in process). engine_part measures a real engine's."""
    from bench import hybrid_latency

    return {
        "end_to_end": hybrid_end_to_end(url, queries, rounds),
        "first_stage": asyncio.run(hybrid_latency.measure("embedded", None, len(queries), rounds)),
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
    repeat (warm cache). Only `ok` answers count towards throughput and latency."""
    latencies: list[float] = []
    statuses = Statuses()
    counter = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for n in counter:
            t0 = time.perf_counter()
            text = queries[n % len(queries)] + (f" {fresh}{clients}n{n}" if fresh else "")
            r = await client.post(
                "/search", json={"query": text, "window": 100, "timeout_ms": 30_000}
            )
            if r.status_code != 200:
                statuses["error"] += 1
                continue
            status = r.json().get("rerank_status", "unknown")
            statuses[status] += 1
            if status == "ok":
                latencies.append((time.perf_counter() - t0) * 1000)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "requests": requests,
        "ok": len(latencies),
        "statuses": dict(statuses),
        "qps": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50) if latencies else None,
        "p95_ms": percentile(latencies, 95) if latencies else None,
        "p99_ms": percentile(latencies, 99) if latencies else None,
    }


def concurrency_sweep(
    url: str, queries: list[str], levels: list[int], per_level: int, fresh: str = ""
) -> list[dict[str, Any]]:
    # at least 16 requests per client: with fewer, the ramp-up and the last stragglers weigh
    # on the figure (at 32 clients and 8 each the batched ratio moved between 2.4x and 3.4x)
    return [
        asyncio.run(_load(url, clients, max(per_level, clients * 16), queries, fresh))
        for clients in levels
    ]


def batching(
    base: dict[str, Any], queries: list[str], levels: list[int], per_level: int
) -> dict[str, Any]:
    """New-query throughput with micro-batching on and off, each in a fresh sidecar, in this
    one run; the ratio at each level."""
    sweeps = {}
    for name, scorer in (("on", {}), ("off", {"micro_batching": False})):
        print(f"== batching sweep: new queries, micro-batching {name}", flush=True)
        settings = {**base, "scorer": scorer} if scorer else base
        with serving_process(settings) as (url, _):
            asyncio.run(_load(url, 4, 16, queries, fresh=f"warm{name}"))  # connections, model
            sweeps[name] = concurrency_sweep(url, queries, levels, per_level, fresh=name)
    ratios = {
        on["clients"]: (on["qps"] / off["qps"] if off["qps"] else None)
        for on, off in zip(sweeps["on"], sweeps["off"], strict=True)
    }
    return {"on": sweeps["on"], "off": sweeps["off"], "ratio": ratios}


def memory(base: dict[str, Any], queries: list[str], requests: int) -> dict[str, Any]:
    """Distinct queries (each new, so the pair-score cache and the query-embedding cache only
    grow) over the whole catalog (every product's embedding is made at start-up and read by
    the windows), until every cache is at its bound; resident memory sampled along the way.
    The pair-score cache is bounded for the run so that it fills within it; the query
    embeddings' bound is the scorer's (10,000), so a run of more requests than that fills them
    too. Flat: RSS grows by at most the goal's share (bench.run_report.GOALS) once the caches
    are full (the last third)."""
    max_entries = max(1000, requests * 100 // 3)  # full after a third of the requests
    settings = {**base, "cache": {"kind": "memory", "max_entries": max_entries}}
    steps = 12
    samples: list[dict[str, Any]] = []
    statuses = Statuses()
    with serving_process(settings) as (url, pid):
        samples.append({"requests": 0, "rss_mb": rss_mb(pid)})
        done = 0
        for step in range(steps):
            count = requests // steps
            result = asyncio.run(_load(url, 8, count, queries, fresh=f"mem{step}x"))
            statuses.update(result["statuses"])
            done += count
            samples.append({"requests": done, "rss_mb": rss_mb(pid)})
    full_at = next(s for s in samples if s["requests"] >= requests * 2 // 3)
    last = samples[-1]
    growth = (last["rss_mb"] - full_at["rss_mb"]) / full_at["rss_mb"] * 100
    return {
        "requests": done,
        "pair_cache_max_entries": max_entries,
        "query_embeddings_bound": 10_000,
        "query_embeddings_full": done >= 10_000,
        "statuses": dict(statuses),
        "samples": samples,
        "rss_before_mb": samples[0]["rss_mb"],
        "rss_after_mb": last["rss_mb"],
        "growth_after_full_pct": growth,
    }


@contextmanager
def _redis() -> Iterator[str]:
    """A redis-server on 127.0.0.1 for the run (tests/redis_server.py), ended by pid."""
    from tests.redis_server import RedisServer

    server = RedisServer(Path(tempfile.mkdtemp(prefix="bench-redis-"))).start()
    try:
        yield server.url
    finally:
        server.stop()


def engine_part(engine: str, queries: list[str], rounds: int, quick: bool) -> dict[str, Any]:
    """Cold p95 on a real engine started here, (a) on an empty cache and (b) on a Redis another
    replica filled, and the added latency over the engine alone (window 100, warm)."""
    from bench import engine_overhead, hybrid_latency
    from es_integration.engines import start, stop
    from sidecar.backends.indexing import index_catalog
    from sidecar.config import EngineSettings

    state = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    state.chmod(0o755)  # the engine runs as its own user, which must enter this folder
    try:
        node = start(engine, state)
    except Exception as exc:  # the engine part is optional: say why it was skipped
        return {"engine": engine, "skipped": f"could not start {engine}: {exc}"}
    out: dict[str, Any] = {"engine": engine}
    try:
        url = str(node["url"])
        index_catalog(EngineSettings(kind=engine, urls=[url]), recreate=True, progress=False)
        on_engine = {
            "rules": {"watch": False},
            "engine": {"kind": engine, "urls": [url], "search_fields": SEARCH_FIELDS},
        }
        print(f"== {engine}: (a) a fresh sidecar on an empty cache", flush=True)
        with serving_process({**on_engine, "cache": {"kind": "memory"}}) as (sidecar, _):
            out["end_to_end"] = end_to_end(sidecar, queries, rounds, engine)
        out["cold_empty"] = out["end_to_end"]["cold"]
        print(f"== {engine}: (b) a fresh sidecar on a Redis another replica filled", flush=True)
        try:
            out.update(_shared_cold(on_engine, queries))
        except RuntimeError as exc:  # no redis-server here: say so
            out["cold_shared"] = {"skipped": str(exc)}
        print(f"== {engine}: added latency over the engine alone (window 100, warm)", flush=True)
        overhead = engine_overhead.measure(engine, url, 2 if quick else 5, 100, 10)
        out["added"] = overhead
        print(f"== {engine}: what the hybrid vector leg adds to the first stage", flush=True)
        out["hybrid_first_stage"] = asyncio.run(
            hybrid_latency.measure(engine, url, len(queries), rounds)
        )
    finally:
        stop(engine, state)
    return out


def _shared_cold(on_engine: dict[str, Any], queries: list[str]) -> dict[str, Any]:
    with _redis() as redis_url:
        shared = {**on_engine, "cache": {"kind": "redis", "redis_url": redis_url}}
        filler_statuses = Statuses()
        with serving_process(shared) as (filler, _), httpx.Client(base_url=filler) as client:
            _timed_pass(client, queries, 1, filler_statuses)  # encodes and shares
        with serving_process(shared) as (fresh, _), httpx.Client(base_url=fresh) as client:
            new_statuses, same_statuses = Statuses(), Statuses()
            new_keys, _ = _timed_pass(client, queries, 1, new_statuses, None, OTHER_INSTRUCTION)
            same_keys, _ = _timed_pass(client, queries, 1, same_statuses)
            encoded = _metric(client, "sidecar_documents_encoded_total")
    return {
        "cold_shared": {
            **_summary("fresh replica, pair scores new", new_keys, new_statuses),
            "documents_encoded_here": encoded,
            "filler_statuses": dict(filler_statuses),
        },
        "cold_shared_same_queries": _summary(
            "fresh replica, pair scores shared too", same_keys, same_statuses
        ),
    }


def _metric(client: httpx.Client, name: str) -> float | None:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


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


def run(quick: bool, engine: str | None) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    n_queries, rounds = (30, 2) if quick else (80, 5)
    queries = demo_queries(n_queries)
    per_level = 32 if quick else 256
    report: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": os.getloadavg(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "quick": quick,
    }
    base = {"rules": {"watch": False}}
    print("== end to end, embedded default (sidecar in its own process)", flush=True)
    with serving_process(base) as (url, _):
        report["end_to_end"] = end_to_end(url, queries, rounds, "embedded")
        print("== hybrid: what the vector leg adds (embedded default)", flush=True)
        report["hybrid"] = hybrid_part(url, queries, rounds)
    report["engines"] = []
    if engine:
        report["engines"].append(engine_part(engine, queries, rounds, quick))
    report["batching"] = batching(base, queries, LEVELS, per_level)
    print("== memory: distinct queries until the caches are full", flush=True)
    report["memory"] = memory(base, queries, 1_200 if quick else 12_000)
    print("== CPU scorer vs sentence-transformers baseline", flush=True)
    report["scorer_vs_baseline"] = scorer_vs_baseline(queries, 20 if quick else 50)
    report["gpu"] = gpu_part()
    print(report["gpu"].get("skipped", "== GPU benchmark done"), flush=True)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    report["goals"] = goals(report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description="rerank sidecar benchmarks, one report")
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument(
        "--engine",
        choices=["elasticsearch", "opensearch"],
        help="also measure cold and added latency against this real engine (started here)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = run(args.quick, args.engine)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    plot(report, args.out / "latest.png")
    for goal in report["goals"]:
        shown = f"{goal['value']} ({goal['limit']})" if "value" in goal else ""
        print(f"{goal['result']:>12}  {goal['goal']}: {shown}  [{goal['note']}]")
    print(f"wrote {args.out / 'latest.json'} and {args.out / 'latest.png'}")


if __name__ == "__main__":
    main()
