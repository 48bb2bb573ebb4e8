"""What the sidecar adds over a direct engine query, measured side by side.

    python -m bench.engine_overhead [--engine elasticsearch|opensearch|both] [--rounds 5]
                                    [--window 100] [--json out.json] [--baseline DIR]

For every demo query, one after the other on warm connections: the engine's own `_search` with
exactly the body the sidecar's backend sends (multi_match over the same boosted fields, size =
window, `_source` = the field map), then the sidecar's `/search` and drop-in `/products/_search`
for the same query, window and page. The sidecar runs in a process of its own
(bench.server.serving_process), so the load generator does not share its interpreter. The pair
cache is warmed by one discarded round first, so what is left is the sidecar's own work: HTTP,
the engine round trip, documents, cache look-ups, rules and the response. Reported: p50/p95 of
each and of the per-query difference (added latency).

`--baseline DIR` serves another checkout (say, the commit before a change) beside this one and
times its `/search` and drop-in right after this one's for every query: on a shared machine the
noise then falls on both alike, and the ratio of the two is fair where absolute numbers are not.

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
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.server import serving_process
from sidecar.backends import dsl
from sidecar.config import EngineSettings, FieldMap, QuerySettings
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


def measure(
    kind: str, url: str, rounds: int, window: int, size: int, baseline: Path | None = None
) -> dict[str, Any]:
    """The series, interleaved query by query so that a noisy machine weighs on each alike.
    `baseline`: another checkout served beside this one (its own process too), whose
    `/search` and drop-in run right after this one's for every query: an A/B on the same
    engine at the same moment."""
    from sidecar.demo import load_queries

    settings = {
        "engine": {"kind": kind, "urls": [url], "search_fields": SEARCH_FIELDS},
        "cache": {"kind": "memory"},
        "rules": {"watch": False},
    }
    normalizer = Normalizer(QuerySettings().casing)
    source_fields = FieldMap().source_fields()
    queries = [q["query"] for q in load_queries()]
    names = ["search", "drop_in"] + (["baseline_search", "baseline_drop_in"] if baseline else [])
    samples: dict[str, list[float]] = {"direct": [], **{name: [] for name in names}}
    added: dict[str, list[float]] = {name: [] for name in names}
    server_side: dict[str, list[float]] = {"search": [], "baseline_search": []}
    engine_client = httpx.Client(base_url=url, trust_env=False, timeout=30)
    with ExitStack() as stack:
        servers = {"": stack.enter_context(serving_process(settings, 600))[0]}
        if baseline is not None:
            servers["baseline_"] = stack.enter_context(serving_process(settings, 600, baseline))[0]
        clients = {
            prefix: stack.enter_context(httpx.Client(base_url=base, trust_env=False, timeout=30))
            for prefix, base in servers.items()
        }
        order = list(clients.items())
        for round_no in range(rounds + 1):  # round 0 warms the pair cache and connections
            for text in queries:
                order.reverse()  # with a baseline, each goes first every other query
                normalized = normalizer.query(text).text
                body = dsl.build_body(normalized, [], window, 0, SEARCH_FIELDS, source_fields)
                direct_ms = _timed(lambda b=body: engine_client.post("/products/_search", json=b))
                drop_in_body = {
                    "query": body["query"],
                    "size": size,
                    "ext": {"rerank": {"window": window, "query": text}},
                }
                timed: dict[str, float] = {}
                for prefix, client in order:
                    timed[prefix + "search"], answer = _timed_json(
                        lambda t=text, c=client: c.post(
                            "/search", json={"query": t, "window": window, "size": size}
                        )
                    )
                    timed[prefix + "drop_in"] = _timed(
                        lambda b=drop_in_body, c=client: c.post("/products/_search", json=b)
                    )
                    if round_no and answer.get("cache", {}).get("misses"):
                        raise RuntimeError(f"cache not warm for {text!r}: {answer['cache']}")
                    t = answer["timings"]
                    server_side[prefix + "search"].append(t["total_ms"] - t["engine_ms"])
                if round_no == 0:
                    for series in server_side.values():
                        series.clear()
                    continue
                samples["direct"].append(direct_ms)
                for name in names:
                    samples[name].append(timed[name])
                    added[name].append(timed[name] - direct_ms)
    engine_client.close()
    result: dict[str, Any] = {
        "engine": kind,
        "url": url,
        "requests_per_series": len(samples["direct"]),
        "window": window,
        "size": size,
        "latency_ms": {name: _percentiles(values) for name, values in samples.items()},
        "added_ms": {name: _percentiles(values) for name, values in added.items()},
        "sidecar_total_minus_engine_ms": _percentiles(server_side["search"]),
    }
    if baseline is not None:
        result["baseline"] = str(baseline)
        result["baseline_total_minus_engine_ms"] = _percentiles(server_side["baseline_search"])
    return result


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
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (its folder) to serve beside this one, interleaved: an A/B",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    kinds = ["elasticsearch", "opensearch"] if args.engine == "both" else [args.engine]
    results = []
    for kind in kinds:
        with running_engine(kind) as url:
            ensure_catalog(url)
            results.append(measure(kind, url, args.rounds, args.window, args.size, args.baseline))
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
        for key in ("sidecar_total_minus_engine_ms", "baseline_total_minus_engine_ms"):
            if key in result:
                stats, label = result[key], key.removesuffix("_ms").replace("_", " ")
                print(f"  {label:<28}{stats['p50']:>10}{stats['p95']:>10}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
