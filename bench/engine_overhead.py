"""What the sidecar adds over a direct engine query, measured side by side.

    python -m bench.engine_overhead [--engine elasticsearch|opensearch|both] [--rounds 5]
                                    [--window 100] [--json out.json]

For every demo query, one after the other on warm connections: the engine's own `_search` with
exactly the body the sidecar's backend sends (multi_match over the same boosted fields, size =
window, `_source` = the field map), then the sidecar's `/search` and drop-in `/products/_search`
for the same query, window and page. The pair cache is warmed by one discarded round first, so
what is left is the sidecar's own work: HTTP, the engine round trip, documents, cache look-ups,
encoding the query (MiniLM, CPU), rules and the response. Reported: p50/p95 of each and of the
per-query difference (added latency).

Engines come from ES_URL / OPENSEARCH_URL when set, otherwise they are started here (cached
download, es_integration.engines) and stopped at the end. The demo catalog is loaded when
`products` does not hold it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.server import serving
from sidecar.backends import dsl
from sidecar.config import EngineSettings, FieldMap, QuerySettings, Settings
from sidecar.query import Normalizer

URL_VARS = {"elasticsearch": "ES_URL", "opensearch": "OPENSEARCH_URL"}
SEARCH_FIELDS = {"title": 3.0, "selling_points": 1.5, "brand.text": 2.0, "category.text": 1.0}


@contextmanager
def running_engine(kind: str) -> Iterator[str]:
    """The engine's URL: from the environment, or started here for the run."""
    if os.environ.get(URL_VARS[kind]):
        yield os.environ[URL_VARS[kind]]
        return
    from es_integration.engines import start, stop

    state = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    state.chmod(0o755)  # the engine user must enter it when we run as root
    node = start(kind, state / "engines")
    print(f"started {kind} {node['version']} in {node['startup_s']} s at {node['url']}")
    try:
        yield str(node["url"])
    finally:
        stop(kind, state / "engines")


def ensure_catalog(url: str) -> None:
    from sidecar.backends.indexing import index_catalog
    from sidecar.demo import CATALOG_PATH, load_catalog

    count = httpx.get(f"{url}/products/_count", trust_env=False, timeout=10)
    if count.status_code != 200 or count.json().get("count") != len(load_catalog()):
        index_catalog(EngineSettings(urls=[url]), CATALOG_PATH, recreate=True, progress=False)


def measure(kind: str, url: str, rounds: int, window: int, size: int) -> dict[str, Any]:
    from sidecar.app import create_app
    from sidecar.demo import load_queries

    settings = Settings(
        engine=EngineSettings(kind=kind, urls=[url], search_fields=SEARCH_FIELDS),
        cache={"kind": "memory"},
        rules={"watch": False},
    )
    normalizer = Normalizer(QuerySettings().casing)
    source_fields = FieldMap().source_fields()
    queries = [q["query"] for q in load_queries()]
    samples: dict[str, list[float]] = {"direct": [], "search": [], "drop_in": []}
    added: dict[str, list[float]] = {"search": [], "drop_in": []}
    server_side: list[float] = []
    engine_client = httpx.Client(base_url=url, trust_env=False, timeout=30)
    with serving(create_app(settings, wait_for_model=True), ready_timeout_s=600) as sidecar_url:
        sidecar = httpx.Client(base_url=sidecar_url, trust_env=False, timeout=30)
        for round_no in range(rounds + 1):  # round 0 warms the pair cache and connections
            for text in queries:
                normalized = normalizer.query(text).text
                body = dsl.build_body(normalized, [], window, 0, SEARCH_FIELDS, source_fields)
                direct_ms = _timed(lambda b=body: engine_client.post("/products/_search", json=b))
                search_ms, answer = _timed_json(
                    lambda t=text: sidecar.post(
                        "/search", json={"query": t, "window": window, "size": size}
                    )
                )
                drop_in_body = {
                    "query": body["query"],
                    "size": size,
                    "ext": {"rerank": {"window": window, "query": text}},
                }
                drop_in_ms = _timed(
                    lambda b=drop_in_body: sidecar.post("/products/_search", json=b)
                )
                if round_no == 0:
                    continue
                if answer.get("cache", {}).get("misses"):
                    raise RuntimeError(f"cache not warm for {text!r}: {answer['cache']}")
                samples["direct"].append(direct_ms)
                samples["search"].append(search_ms)
                samples["drop_in"].append(drop_in_ms)
                added["search"].append(search_ms - direct_ms)
                added["drop_in"].append(drop_in_ms - direct_ms)
                server_side.append(answer["timings"]["total_ms"] - answer["timings"]["engine_ms"])
        sidecar.close()
    engine_client.close()
    return {
        "engine": kind,
        "url": url,
        "requests_per_series": len(samples["direct"]),
        "window": window,
        "size": size,
        "latency_ms": {name: _percentiles(values) for name, values in samples.items()},
        "added_ms": {name: _percentiles(values) for name, values in added.items()},
        "sidecar_total_minus_engine_ms": _percentiles(server_side),
    }


def _timed(call: Any) -> float:
    started = time.perf_counter()
    response = call()
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed


def _timed_json(call: Any) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = call()
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed, response.json()


def _percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {
        "p50": round(cuts[49], 2),
        "p95": round(cuts[94], 2),
        "mean": round(statistics.fmean(values), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=["elasticsearch", "opensearch", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds over the queries")
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--size", type=int, default=10)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    kinds = ["elasticsearch", "opensearch"] if args.engine == "both" else [args.engine]
    results = []
    for kind in kinds:
        with running_engine(kind) as url:
            ensure_catalog(url)
            results.append(measure(kind, url, args.rounds, args.window, args.size))
    for result in results:
        print(
            f"\n{result['engine']} ({result['requests_per_series']} requests per series, "
            f"window {result['window']}, warm pair cache)"
        )
        print(f"  {'series':<28}{'p50 ms':>10}{'p95 ms':>10}")
        for name, stats in result["latency_ms"].items():
            print(f"  {name:<28}{stats['p50']:>10}{stats['p95']:>10}")
        for name, stats in result["added_ms"].items():
            print(f"  {'added by ' + name:<28}{stats['p50']:>10}{stats['p95']:>10}")
        stats = result["sidecar_total_minus_engine_ms"]
        print(f"  {'server total - engine_ms':<28}{stats['p50']:>10}{stats['p95']:>10}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
