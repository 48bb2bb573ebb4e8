"""A reranked search's outcome rendered in the engine's shape: `took`, `timed_out`, `_shards`,
`hits.total`, `hits.max_score`, `hits.hits[]` with `_score` = the final score (the caller's
`_source` spec applied), plus `_rerank` on every hit and a top-level `rerank` key. A point in
time's first page gives every hit the page's continuation point as its `sort`.
"""

from __future__ import annotations

from typing import Any

from sidecar.api.source_filter import source_entry
from sidecar.backends.dsl import CONTINUE_AFTER
from sidecar.pipeline import PageHit, SearchOutcome
from sidecar.services import Services

ONE_SHARD = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}


def render(
    outcome: SearchOutcome,
    index: str,
    source_spec: Any,
    services: Services,
    *,
    in_time: bool = False,
) -> dict[str, Any]:
    """The engine-shaped answer of one reranked search (`in_time`: a point in time's page)."""
    raw = outcome.raw
    hits = [_hit(page_hit, index, source_spec) for page_hit in outcome.hits]
    if in_time and raw.get(CONTINUE_AFTER) is not None:
        for hit in hits:  # any hit's `sort` continues after the page, in the engine's order
            hit["sort"] = raw[CONTINUE_AFTER]
    reranked = [h["_score"] for h in hits if h["_rerank"]["reranked"]]
    scores = reranked or [h["_score"] for h in hits]
    report = outcome.report
    body: dict[str, Any] = {
        **({"pit_id": raw["pit_id"]} if "pit_id" in raw else {}),
        "took": round(outcome.timings.get("total_ms", 0.0)),
        "timed_out": bool(raw.get("timed_out", False)),
        "_shards": raw.get("_shards", ONE_SHARD),
        "hits": {
            "total": {"value": outcome.total, "relation": raw.get("total_relation", "eq")},
            "max_score": max(scores) if scores else None,
            "hits": hits,
        },
    }
    if "aggregations" in raw:
        body["aggregations"] = raw["aggregations"]
    body["rerank"] = {
        "status": report.status,
        "reason": report.reason,
        "window": outcome.window,
        "dropped": outcome.dropped,
        "kept_despite_drop": outcome.kept_despite_drop,
        "query_type": outcome.query_type.name if outcome.query_type else None,
        "cache": report.cache_summary(),
        "timings": outcome.timings,
        "model": services.scorer.model_id,
        "engine": outcome.engine,
        "rules_version": outcome.rules_version,
    }
    return body


def _hit(page_hit: PageHit, index: str, source_spec: Any) -> dict[str, Any]:
    hit, ranked = page_hit.hit, page_hit.ranked
    source = hit.source
    if source_spec is True and type(source) is dict:  # all of it, written out as it is
        kept: dict[str, Any] = {"_source": source}
    else:
        kept = source_entry(source, source_spec)
    return {
        "_index": hit.index or index,
        "_id": hit.id,
        "_score": ranked.final if ranked else hit.score,
        **kept,
        "_rerank": {
            "reranked": ranked is not None,
            "model_score": ranked.candidate.model_score if ranked else None,
            "engine_score": hit.score,
            "band": ranked.band if ranked else "unscored",
            "rules": [{"rule": f.rule, "kind": f.kind, "effect": f.effect} for f in ranked.fired]
            if ranked
            else [],
            "flags": list(page_hit.flags)
            + (["kept_by_min_results"] if ranked and ranked.kept_by_min_results else []),
        },
    }
