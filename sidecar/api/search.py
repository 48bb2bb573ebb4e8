"""POST /search: read the request (api.mapping), run the pipeline, shape the response."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sidecar.api.deps import ServicesDep
from sidecar.api.mapping import search_params
from sidecar.api.models import SearchRequest
from sidecar.observability.middleware import remember_search
from sidecar.pipeline import PageHit, SearchOutcome, SearchParams
from sidecar.services import Services

router = APIRouter()


@router.post("/search")
async def search(body: SearchRequest, services: ServicesDep, request: Request) -> dict[str, Any]:
    params, deadline = search_params(body, services, request)
    outcome = await services.pipeline.search(params, deadline)
    remember_search(request, outcome, params.query.text)  # metrics and the request's log line
    return render(outcome, params, body.explain, services)


def render(
    outcome: SearchOutcome, params: SearchParams, explain: bool, services: Services
) -> dict[str, Any]:
    report = outcome.report
    query_type = outcome.query_type.name if outcome.query_type else None
    return {
        "hits": [_hit(h, explain, query_type) for h in outcome.hits],
        "retrieval": {"mode": outcome.retrieval, "reason": outcome.retrieval_reason},
        "total": outcome.total,
        "from": params.offset,
        "size": params.size,
        "window": outcome.window,
        "dropped": outcome.dropped,
        # dropped by a rule but shown, so the page is not empty (drop.min_results)
        "kept_despite_drop": outcome.kept_despite_drop,
        "rerank_status": report.status,
        "reason": report.reason,
        "cache": report.cache_summary(),
        "timings": outcome.timings,
        "query": {"text": params.query.text, "image": params.query.has_image},
        "query_type": query_type,  # the product type the query names (product_types)
        "model": services.scorer.model_id,
        "engine": outcome.engine,
        "rules_version": outcome.rules_version,
    }


def _hit(page_hit: PageHit, explain: bool, query_type: str | None) -> dict[str, Any]:
    ranked = page_hit.ranked
    source = page_hit.hit.source  # written out as it is: nothing changes it on the way
    out: dict[str, Any] = {
        "id": page_hit.document.id,
        "source": source if type(source) is dict else dict(source),
        "score": ranked.final if ranked else page_hit.hit.score,
        "model_score": ranked.candidate.model_score if ranked else None,
        "engine_score": page_hit.hit.score,
        "band": ranked.band if ranked else "unscored",
        "reranked": ranked is not None,
        "flags": flags(page_hit),
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
            # the type the query names, this hit's, and how they stand (what rules read)
            "product_type": {
                "query": query_type,
                "hit": ranked.candidate.product_type,
                "match": ranked.type_match,
            },
        }
        if page_hit.hit.legs:  # a hybrid first stage: the hit's place in each leg
            out["explain"]["retrieval"] = {
                leg: {"rank": place.rank, "score": place.score}
                for leg, place in page_hit.hit.legs.items()
            }
    return out


def flags(page_hit: PageHit) -> list[str]:
    """The hit's flags, and `kept_by_min_results` for a dropped hit shown to fill the page."""
    out = list(page_hit.flags)
    if page_hit.ranked is not None and page_hit.ranked.kept_by_min_results:
        out.append("kept_by_min_results")
    return out
