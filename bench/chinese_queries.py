"""Chinese demo queries on the first stage: precision@10 and recall in the rerank window.

    python -m bench.chinese_queries                                 # the embedded default
    python -m bench.chinese_queries --engine opensearch --url URL   # a real engine
    python -m bench.chinese_queries --compare                       # embedded tokenizations
    python -m bench.chinese_queries --json out.json

Each Chinese query family of the demo (sidecar/demo/queries_zh.json) is normalized as /search
normalizes it and sent to the engine through the sidecar's own backend (the embedded engine's
query, or the DSL body /search sends to Elasticsearch/OpenSearch), window 100. Per family:
precision@10 of the engine's order (what a page shows when the scorer cannot read Chinese and
/search falls back to it), recall of the relevant products within the window (what a reranker
that reads Chinese has to work with), near misses in the top 10 and the engine's total.

A real engine must hold the demo catalog in `products`, loaded with `rerank-sidecar index`
(which picks products-cjk.json where the engine has the `cjk` analyzer); the report names the
mapping it found. `--compare` builds the embedded index once per tokenization of its CJK
sub-fields (the shipped characters + pairs; pairs alone; characters alone; none; jieba when it
is installed) through the embedded engine's own code, and adds index build and query times.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import tantivy

from sidecar.backends import embedded
from sidecar.backends.base import SearchBackend
from sidecar.config import Settings
from sidecar.deadline import Deadline
from sidecar.demo import load_queries_zh
from sidecar.query import Normalizer
from sidecar.wiring import build_backend

WINDOW = 100
# The engines' fields of docs/engines.md: brand and category are keywords, `.text` is full text.
ENGINE_FIELDS = {"title": 3.0, "selling_points": 1.5, "brand.text": 2.0, "category.text": 1.0}


def evaluate(
    settings: Settings, window: int = WINDOW, backend: SearchBackend | None = None
) -> dict[str, Any]:
    """Every Chinese family through the backend `settings` name: per-family rows and means."""
    normalizer = Normalizer(
        settings.query.casing, traditional_to_simplified=settings.query.traditional_to_simplified
    )
    backend = backend or build_backend(settings)
    families = load_queries_zh()

    async def run() -> tuple[list[Any], float]:
        started = time.perf_counter()
        try:
            results = [
                await backend.search(
                    settings.engine.default_index,
                    normalizer.text(f["query"]),
                    [],
                    window,
                    Deadline.after(30.0),
                )
                for f in families
            ]
        finally:
            await backend.close()
        return results, time.perf_counter() - started

    results, seconds = asyncio.run(run())
    rows = []
    for family, result in zip(families, results, strict=True):
        ids = [hit.id for hit in result.hits]
        relevant, near = set(family["relevant_ids"]), set(family["near_miss_ids"])
        rows.append(
            {
                "query": family["query"],
                "precision_at_10": sum(i in relevant for i in ids[:10]) / 10,
                "recall_in_window": len(relevant & set(ids)) / len(relevant),
                "near_misses_in_top_10": sum(i in near for i in ids[:10]),
                "total": result.total,
            }
        )
    return {
        "engine": settings.engine.kind,
        "window": window,
        "families": rows,
        "precision_at_10": statistics.fmean(r["precision_at_10"] for r in rows),
        "recall_in_window": statistics.fmean(r["recall_in_window"] for r in rows),
        "mean_total": statistics.fmean(r["total"] for r in rows),
        "query_ms": seconds * 1000 / len(rows),
    }


def engine_mapping(url: str, index: str) -> str:
    """Which template the engine's index looks made from (its `title` field's sub-fields)."""
    answer = httpx.get(f"{url.rstrip('/')}/{index}/_mapping", trust_env=False, timeout=10)
    if answer.status_code != 200:
        return f"no index {index!r} ({answer.status_code}): load it with rerank-sidecar index"
    mapping = next(iter(answer.json().values()))["mappings"]
    title = mapping.get("properties", {}).get("title", {})
    cjk = title.get("fields", {}).get("cjk")
    if cjk:
        return f"products-cjk.json (title.cjk: analyzer {cjk.get('analyzer')})"
    return "products.json (no .cjk sub-fields: the standard analyzer's single characters)"


# --- the embedded tokenizations compared ------------------------------------------------------


def _pairs(run: str) -> list[str]:
    """Lucene's CJK bigrams (OpenSearch's `cjk` analyzer): pairs, a lone character alone."""
    return [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]


def _jieba() -> Callable[[str], list[str]] | None:
    try:
        import jieba  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    jieba.setLogLevel(logging.WARNING)
    return lambda run: [w for w in jieba.cut_for_search(run) if w.strip()]


@contextmanager
def tokenization(name: str) -> Iterator[bool]:
    """The embedded engine with its CJK sub-fields cut another way, for this block; yields
    False when that tokenization is not available here (jieba not installed)."""
    shipped_analyzer, shipped_runs = embedded._CJK_ANALYZER, embedded.cjk_runs
    whitespace = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build()
    cut: Callable[[str], list[str]] | None = None
    if name == "characters":
        embedded._CJK_ANALYZER = tantivy.TextAnalyzerBuilder(
            tantivy.Tokenizer.ngram(1, 1, False)
        ).build()
    elif name in ("pairs", "jieba"):
        cut = _pairs if name == "pairs" else _jieba()
        if cut is None:
            yield False
            return
        embedded._CJK_ANALYZER = whitespace  # each run comes already cut, one word a space
        words = cut
        embedded.cjk_runs = lambda text: [" ".join(words(run)) for run in shipped_runs(text)]
    elif name == "none":
        embedded.cjk_runs = lambda text: []
    try:
        yield True
    finally:
        embedded._CJK_ANALYZER, embedded.cjk_runs = shipped_analyzer, shipped_runs


TOKENIZATIONS = {
    "characters + pairs": "tantivy ngram(1, 2) on CJK runs (shipped)",
    "pairs": "Lucene CJK bigrams, a lone character alone (OpenSearch's cjk analyzer)",
    "characters": "tantivy ngram(1, 1): one character a token (the standard analyzer's cut)",
    "jieba": "jieba.cut_for_search words (a dictionary segmenter)",
    "none": "no CJK sub-field (the embedded engine before)",
}


def compare(settings: Settings) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, what in TOKENIZATIONS.items():
        with tokenization(name) as available:
            if not available:
                rows.append({"tokenization": name, "what": what, "missing": "pip install jieba"})
                continue
            started = time.perf_counter()
            backend = build_backend(settings)  # the index of the catalog: what start-up pays
            build_ms = (time.perf_counter() - started) * 1000
            report = evaluate(settings, backend=backend)
        rows.append({"tokenization": name, "what": what, "index_ms": build_ms, **report})
    return rows


# --- output ----------------------------------------------------------------------------------


def print_report(report: dict[str, Any], mapping: str | None) -> None:
    print(f"engine: {report['engine']}, window {report['window']}")
    if mapping:
        print(f"mapping: {mapping}")
    print(f"{'query':<28} {'P@10':>5} {'recall':>7} {'near@10':>8} {'total':>6}")
    for row in report["families"]:
        pad = 28 - sum(2 if ord(c) > 0x2E80 else 1 for c in row["query"])  # CJK is 2 wide
        print(
            f"{row['query']}{' ' * max(pad, 1)} {row['precision_at_10']:5.2f} "
            f"{row['recall_in_window']:7.2f} {row['near_misses_in_top_10']:8d} {row['total']:6d}"
        )
    print(
        f"{'mean':<28} {report['precision_at_10']:5.3f} {report['recall_in_window']:7.3f} "
        f"{'':>8} {report['mean_total']:6.0f}"
    )


def print_comparison(rows: list[dict[str, Any]]) -> None:
    print(f"embedded engine, window {WINDOW}: CJK sub-field tokenizations")
    print(
        f"{'tokenization':<20} {'P@10':>6} {'recall':>7} {'total':>6} "
        f"{'index ms':>9} {'query ms':>9}"
    )
    for row in rows:
        if "missing" in row:
            print(f"{row['tokenization']:<20} not measured: {row['missing']}")
            continue
        print(
            f"{row['tokenization']:<20} {row['precision_at_10']:6.3f} "
            f"{row['recall_in_window']:7.3f} {row['mean_total']:6.0f} "
            f"{row['index_ms']:9.0f} {row['query_ms']:9.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["embedded", "elasticsearch", "opensearch"])
    parser.add_argument("--url", help="the engine's URL (elasticsearch, opensearch)")
    parser.add_argument("--index", default="products")
    parser.add_argument("--compare", action="store_true", help="embedded tokenizations")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    kind = args.engine or "embedded"
    if kind != "embedded" and not args.url:
        parser.error(f"--engine {kind} needs --url (python -m es_integration.engines start {kind})")
    engine: dict[str, Any] = {"kind": kind, "default_index": args.index}
    if kind != "embedded":
        engine.update(urls=[args.url], search_fields=ENGINE_FIELDS)
    settings = Settings(engine=engine)
    result: Any
    if args.compare:
        if kind != "embedded":
            parser.error("--compare measures the embedded engine's tokenizations")
        result = compare(settings)
        print_comparison(result)
    else:
        mapping = engine_mapping(args.url, args.index) if args.url else None
        result = evaluate(settings)
        print_report(result, mapping)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
