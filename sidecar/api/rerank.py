"""POST /api/rerank: Lychee Rerank MM's API. A query and a list of documents in, sorted scores out.

Unlike /search there is no engine order to fall back on, so a scorer that cannot answer is a 503
with the reason, not a silently partial list.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sidecar.api.deps import ServicesDep
from sidecar.api.mapping import rerank_inputs
from sidecar.api.models import RerankRequest, RerankResponse, RerankResult
from sidecar.rules.engine import band_of

router = APIRouter()


@router.post("/api/rerank", response_model=RerankResponse)
async def rerank(body: RerankRequest, services: ServicesDep) -> dict[str, Any]:
    report = await services.pipeline.rerank(*rerank_inputs(body, services))
    scores = [s for s in report.scores if s is not None]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    if body.top_n is not None:
        order = order[: body.top_n]
    rules = services.rules.current.rules
    return {
        "results": [
            RerankResult(
                index=i,
                score=scores[i],
                band=band_of(rules, scores[i]),
                document=body.documents[i],
                flags=report.flags.get(i, []),
            )
            for i in order
        ],
        "model": services.scorer.model_id,
        "rerank_status": report.status,
        "cache": report.cache_summary(),
        "timings": report.timings,
    }
