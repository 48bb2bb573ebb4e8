"""POST /api/rerank: Lychee Rerank MM's API. A query and a list of documents in, sorted scores out.

Unlike /search there is no engine order to fall back on, so a scorer that cannot answer is a 503
with the reason, not a silently partial list. A scorer that answers but gives one document no
usable score (None, NaN) leaves that document last, with score 0.0, band `unscored` and the flag
`unscored`: every document keeps its own index and score.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sidecar.api.compat import UNSCORED, flags_of, ranking, score_for
from sidecar.api.deps import ServicesDep
from sidecar.api.models import RerankRequest, RerankResponse, RerankResult
from sidecar.rules.ranking import band_of

router = APIRouter()


@router.post("/api/rerank", response_model=RerankResponse)
async def rerank(body: RerankRequest, services: ServicesDep, request: Request) -> dict[str, Any]:
    report = await score_for(request, services, body)
    # by request position throughout: a document without a score must not shift the others
    flags = flags_of(report)
    rules = services.rules.current.rules
    return {
        "results": [
            RerankResult(
                index=i,
                score=score,
                band=UNSCORED if UNSCORED in flags.get(i, []) else band_of(rules, score),
                document=body.documents[i],
                flags=flags.get(i, []),
            )
            for i, score in ranking(report, body.top_n)
        ],
        "model": services.scorer.model_id,
        "rerank_status": report.status,
        "cache": report.cache_summary(),
        "timings": report.timings,
    }
