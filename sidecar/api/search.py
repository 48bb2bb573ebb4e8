"""POST /search: parse, check limits, run the pipeline, shape the response."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from es_integration.backends.base import Filter, RangeFilter, TermFilter
from sidecar.api.deps import ServicesDep
from sidecar.api.models import Filters, QueryObject, SearchRequest
from sidecar.errors import InvalidRequest
from sidecar.observability.middleware import remember_search
from sidecar.pipeline import PageHit, SearchOutcome, SearchParams
from sidecar.query import Normalizer, Query
from sidecar.services import Services

router = APIRouter()


@router.post("/search")
async def search(body: SearchRequest, services: ServicesDep, request: Request) -> dict[str, Any]:
    params = search_params(body, services)
    outcome = await services.pipeline.search(params)
    remember_search(request, outcome, params.query.text)  # metrics and the request's log line
    return render(outcome, params, body.explain, services)


def parse_query(query: str | QueryObject, normalizer: Normalizer) -> Query:
    if isinstance(query, str):
        return normalizer.query(query)
    return normalizer.query(query.text, query.image_url, query.image_base64)


def to_filters(filters: Filters) -> list[Filter]:
    out: list[Filter] = []
    for name, value in filters.term.items():
        values = tuple(value) if isinstance(value, list) else (value,)
        out.append(TermFilter(field=name, values=values))
    for name, bounds in filters.range.items():
        out.append(
            RangeFilter(field=name, gte=bounds.gte, gt=bounds.gt, lte=bounds.lte, lt=bounds.lt)
        )
    return out


def search_params(body: SearchRequest, services: Services) -> SearchParams:
    limits = services.settings.limits
    window = body.window if body.window is not None else limits.default_window
    if window > limits.max_window:
        raise InvalidRequest(
            f"window {window} is above the configured maximum {limits.max_window}", field="window"
        )
    if body.size > limits.max_size:
        raise InvalidRequest(
            f"size {body.size} is above the maximum {limits.max_size}", field="size"
        )
    if body.from_ + body.size > max(limits.max_result_window, window):
        raise InvalidRequest(
            f"from + size must not exceed {limits.max_result_window}", field="from"
        )
    timeout_ms = body.timeout_ms if body.timeout_ms is not None else limits.default_timeout_ms
    if timeout_ms > limits.max_timeout_ms:
        raise InvalidRequest(
            f"timeout_ms {timeout_ms} is above the maximum {limits.max_timeout_ms}",
            field="timeout_ms",
        )
    rules = (
        services.rules.variant(body.rules, body.user_key) if body.rules or body.user_key else None
    )
    return SearchParams(
        index=body.index or services.settings.engine.default_index,
        query=parse_query(body.query, services.normalizer),
        filters=to_filters(body.filters),
        offset=body.from_,
        size=body.size,
        window=window,
        instruction=body.instruction or services.settings.scorer.instruction,
        timeout_s=timeout_ms / 1000,
        rules=rules,
        raw_query=body.raw_query,
    )


def render(
    outcome: SearchOutcome, params: SearchParams, explain: bool, services: Services
) -> dict[str, Any]:
    report = outcome.report
    return {
        "hits": [_hit(h, explain) for h in outcome.hits],
        "total": outcome.total,
        "from": params.offset,
        "size": params.size,
        "window": outcome.window,
        "dropped": outcome.dropped,
        "rerank_status": report.status,
        "reason": report.reason,
        "cache": {
            "status": report.cache_status,
            "hits": report.cache_hits,
            "misses": report.cache_misses,
        },
        "timings": outcome.timings,
        "query": {"text": params.query.text, "image": params.query.has_image},
        "model": services.scorer.model_id,
        "engine": outcome.engine,
        "rules_version": outcome.rules_version,
    }


def _hit(page_hit: PageHit, explain: bool) -> dict[str, Any]:
    ranked = page_hit.ranked
    out: dict[str, Any] = {
        "id": page_hit.document.id,
        "source": dict(page_hit.hit.source),
        "score": ranked.final if ranked else page_hit.hit.score,
        "model_score": ranked.candidate.model_score if ranked else None,
        "engine_score": page_hit.hit.score,
        "band": ranked.band if ranked else "unscored",
        "reranked": ranked is not None,
        "flags": list(page_hit.flags),
    }
    if explain and ranked is not None:
        out["explain"] = {
            "model_score": ranked.candidate.model_score,
            "engine_score": ranked.candidate.engine_score,
            "engine_score_normalized": ranked.engine_norm,
            "blended_score": ranked.blended,
            "rules": [{"rule": f.rule, "kind": f.kind, "effect": f.effect} for f in ranked.fired],
            "band": ranked.band,
            "final_score": ranked.final,
            "engine_rank": ranked.candidate.engine_rank + 1,
        }
    return out
