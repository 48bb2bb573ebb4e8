"""Added latency of the two ways to put the sidecar in a search: OpenSearch calling it as its own
reranker (the native path) and the sidecar's engine-shaped drop-in, warm and cold, in one run.

    python -m bench.native_path [--queries 30] [--rounds 3] [--size 10] [--window N]
                                [--timeout-ms MS] [--out bench/results]

For every query, over real HTTP on 127.0.0.1, one after the other (after one discarded request
per path: connections, the connector's HTTP client):
  engine   OpenSearch `_search` (multi_match over the boosted fields, `size` hits): the baseline;
  native   the same `_search?search_pipeline=...` with `ext.rerank.query_context.query_text`:
           OpenSearch's rerank processor sends the page to the sidecar's /v1/rerank through ML
           Commons (set up with `rerank-sidecar engine-setup opensearch`, its default budget);
  drop-in  the sidecar's `/products/_search` with the same body and `ext.rerank` (the sidecar
           queries OpenSearch, reranks `--window` hits, default the page, as the native path).
Added latency is each request minus the engine's for the same query in the same round.

cold: each query's first request on each path (no pair score of it is cached; a product's
embedding may be, from an earlier query's page); the two paths alternate which goes first, so
neither always meets the other's query encoding. warm: `--rounds` more rounds, every pair cached.
A native answer that equals the engine's (ids and scores) fell back (the processor's
ignore_failure); a drop-in answer says so in `rerank.status`. Both are counted, not dropped.

OpenSearch comes from OPENSEARCH_URL (with the ML plugins), or is started here with
`--plugins ml` and stopped at the end; the demo catalog is loaded when `products` lacks it. The
sidecar runs in a process of its own (bench.server.serving_process), MiniLM on the CPU, memory
cache. Results: `<out>/native_path.json` and `native_path.png`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.engine_overhead import SEARCH_FIELDS, ensure_catalog
from bench.search_latency import demo_queries, percentile
from bench.server import serving_process

FIELDS = [f"{name}^{boost:g}" for name, boost in SEARCH_FIELDS.items()]
PIPELINE = "bench_native_rerank"
RESULTS = Path(__file__).with_name("results")
PATHS = ("native", "drop_in")


@contextmanager
def opensearch_with_ml() -> Iterator[str]:
    """OPENSEARCH_URL, or a node started here with the ML plugins for the run."""
    if os.environ.get("OPENSEARCH_URL"):
        yield os.environ["OPENSEARCH_URL"]
        return
    from es_integration.engines import start, stop

    state = Path(tempfile.mkdtemp(prefix="bench-native-"))
    state.chmod(0o755)  # the engine user must enter it when we run as root
    node = start("opensearch", state / "engines", plugins=["ml"])
    if node.get("plugins_missing"):
        stop("opensearch", state / "engines")
        raise SystemExit(f"the ML plugins are missing: {node['plugins_missing']}")
    print(f"started opensearch {node['version']} with ML in {node['startup_s']} s")
    try:
        yield str(node["url"])
    finally:
        stop("opensearch", state / "engines")


def set_up_native(opensearch: str, sidecar_url: str, timeout_ms: int | None) -> str:
    from sidecar.backends.indexing import engine_client
    from sidecar.config import EngineSettings, Settings
    from sidecar.operations.engine_setup import opensearch as native

    plan = native.Plan.from_settings(Settings(), sidecar_url, PIPELINE, "products", timeout_ms)
    with engine_client(EngineSettings(urls=[opensearch])) as client:
        native.set_up(client, plan)
    return f"{plan.timeout_ms} ms"


def remove_native(opensearch: str) -> None:
    from sidecar.backends.indexing import engine_client
    from sidecar.config import EngineSettings
    from sidecar.operations.engine_setup import opensearch as native

    with engine_client(EngineSettings(urls=[opensearch])) as client:
        native.remove(client, PIPELINE)


def bodies(text: str, size: int, window: int) -> dict[str, dict[str, Any]]:
    query = {"multi_match": {"query": text, "fields": FIELDS, "type": "best_fields"}}
    return {
        "engine": {"query": query, "size": size},
        "native": {
            "query": query,
            "size": size,
            "ext": {"rerank": {"query_context": {"query_text": text}}},
        },
        "drop_in": {
            "query": query,
            "size": size,
            "ext": {"rerank": {"query": text, "window": window}},
        },
    }


def timed(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = client.post(path, json=body)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return elapsed, answer


def hits_of(answer: dict[str, Any]) -> list[tuple[str, float]]:
    return [(h["_id"], h["_score"]) for h in answer["hits"]["hits"]]


def measure(
    opensearch: str, sidecar_url: str, queries: list[str], rounds: int, size: int, window: int
) -> dict[str, Any]:
    samples: dict[str, dict[str, list[float]]] = {
        phase: {name: [] for name in ("engine", *PATHS)} for phase in ("cold", "warm")
    }
    added: dict[str, dict[str, list[float]]] = {
        phase: {name: [] for name in PATHS} for phase in ("cold", "warm")
    }
    fallbacks = {phase: dict.fromkeys(PATHS, 0) for phase in ("cold", "warm")}
    engine = httpx.Client(base_url=opensearch, trust_env=False, timeout=60)
    sidecar = httpx.Client(base_url=sidecar_url, trust_env=False, timeout=60)
    with engine, sidecar:
        # discarded: the connections, and the connector's HTTP client made at its first call
        warm_up = bodies("warm-up query", size, window)
        timed(engine, "/products/_search", warm_up["engine"])
        timed(engine, f"/products/_search?search_pipeline={PIPELINE}", warm_up["native"])
        timed(sidecar, "/products/_search", warm_up["drop_in"])
        for round_no in range(rounds + 1):  # round 0 is the cold one
            phase = "cold" if round_no == 0 else "warm"
            for n, text in enumerate(queries):
                body = bodies(text, size, window)
                engine_ms, direct = timed(engine, "/products/_search", body["engine"])
                order = PATHS if n % 2 == 0 else PATHS[::-1]
                for name in order:
                    if name == "native":
                        path = f"/products/_search?search_pipeline={PIPELINE}"
                        ms, answer = timed(engine, path, body["native"])
                        fell_back = hits_of(answer) == hits_of(direct)
                    else:
                        ms, answer = timed(sidecar, "/products/_search", body["drop_in"])
                        fell_back = answer.get("rerank", {}).get("status") != "ok"
                    samples[phase][name].append(ms)
                    added[phase][name].append(ms - engine_ms)
                    fallbacks[phase][name] += fell_back
                samples[phase]["engine"].append(engine_ms)
    return {
        "latency_ms": {
            phase: {name: stats(values) for name, values in series.items()}
            for phase, series in samples.items()
        },
        "added_ms": {
            phase: {name: stats(values) for name, values in series.items()}
            for phase, series in added.items()
        },
        "fallbacks": fallbacks,
        "requests": {"cold": len(queries), "warm": len(queries) * rounds},
    }


def stats(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(percentile(values, 50), 2),
        "p95": round(percentile(values, 95), 2),
    }


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    names, p50, p95 = [], [], []
    for phase in ("warm", "cold"):
        for name, label in (("native", "native\n(OpenSearch calls)"), ("drop_in", "drop-in")):
            fell = report["fallbacks"][phase][name]
            note = f"\n{fell} of {report['requests'][phase]} fell back" if fell else ""
            names.append(f"{label}\n{phase}{note}")
            p50.append(report["added_ms"][phase][name]["p50"])
            p95.append(report["added_ms"][phase][name]["p95"])
    x = range(len(names))
    for offset, values, label, color in (
        (-0.2, p50, "p50", "#2f6fde"),
        (0.2, p95, "p95", "#9aa5b1"),
    ):
        bars = ax.bar(
            [i + offset for i in x], [max(v, 0.1) for v in values], 0.4, label=label, color=color
        )
        ax.bar_label(bars, labels=[f"{v:.0f}" for v in values], fontsize=8)
    ax.set_xticks(list(x), names)
    ax.set_yscale("log")  # warm and cold differ by an order of magnitude
    ax.set_ylabel("ms added over the engine's own _search (log)")
    ax.set_title(
        f"OpenSearch {report['engine_version']}: page of {report['size']}, "
        f"{report['requests']['warm']} warm / {report['requests']['cold']} cold requests a path"
    )
    ax.legend()
    fig.suptitle(f"native path vs drop-in — {report['machine']['cores']} cores (shared)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def table(report: dict[str, Any]) -> str:
    lines = [
        f"OpenSearch {report['engine_version']}, page of {report['size']}, drop-in window "
        f"{report['window']}, native budget {report['native_budget']}, "
        f"{report['machine']['cores']} cores",
        f"{'':26}{'p50 ms':>9}{'p95 ms':>9}   fell back",
    ]
    for phase in ("warm", "cold"):
        n = report["requests"][phase]
        for name, row in report["latency_ms"][phase].items():
            lines.append(f"{phase + ' ' + name:26}{row['p50']:>9}{row['p95']:>9}")
        for name, row in report["added_ms"][phase].items():
            fell = report["fallbacks"][phase][name]
            label = f"{phase} added by {name}"
            lines.append(f"{label:26}{row['p50']:>9}{row['p95']:>9}   {fell} of {n}")
    return "\n".join(lines)


def run(
    queries: int, rounds: int, size: int, window: int | None, timeout_ms: int | None
) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = demo_queries(queries)
    window = window or size
    with opensearch_with_ml() as opensearch:
        ensure_catalog(opensearch)
        version = httpx.get(opensearch, trust_env=False, timeout=10).json()["version"]["number"]
        engine = {"kind": "opensearch", "urls": [opensearch], "search_fields": SEARCH_FIELDS}
        settings = {"engine": engine, "cache": {"kind": "memory"}, "rules": {"watch": False}}
        with serving_process(settings) as (sidecar_url, _pid):
            budget = set_up_native(opensearch, sidecar_url, timeout_ms)
            try:
                result = measure(opensearch, sidecar_url, texts, rounds, size, window)
            finally:
                remove_native(opensearch)
    return {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "engine_version": version,
        "queries": len(texts),
        "size": size,
        "window": window,
        "native_budget": budget,
        **result,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="warm rounds after the cold one")
    parser.add_argument("--size", type=int, default=10, help="the page (native reranks it)")
    parser.add_argument("--window", type=int, default=None, help="drop-in window (the page)")
    parser.add_argument("--timeout-ms", type=int, default=None, help="native budget override")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = run(args.queries, args.rounds, args.size, args.window, args.timeout_ms)
    print(table(report))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "native_path.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    plot(report, args.out / "native_path.png")
    print(f"wrote {args.out / 'native_path.json'} and {args.out / 'native_path.png'}")


if __name__ == "__main__":
    main()
