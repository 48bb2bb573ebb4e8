"""POST /api/rerank: Lychee Rerank MM's API. A query and a list of documents in, sorted scores out.

Unlike /search there is no engine order to fall back on, so a scorer that cannot answer is a 503
with the reason, not a silently partial list.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from sidecar.api.deps import ServicesDep
from sidecar.api.models import RerankDocument, RerankRequest, RerankResponse, RerankResult
from sidecar.api.search import parse_query
from sidecar.documents import Document, make_document
from sidecar.errors import InvalidRequest, ModelNotReady, Overloaded, ScoringFailed
from sidecar.pipeline import ScoreReport
from sidecar.rules.engine import band_of
from sidecar.services import Services

router = APIRouter()


def to_documents(items: list[str | RerankDocument]) -> list[Document]:
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            if not item.strip():
                raise InvalidRequest("document is empty", field=f"documents[{i}]")
            out.append(make_document(str(i), item.strip()))
        else:
            images = (item.image_url,) if item.image_url else ()
            out.append(make_document(str(i), (item.text or "").strip(), image_urls=images))
    return out


@router.post("/api/rerank", response_model=RerankResponse)
async def rerank(body: RerankRequest, services: ServicesDep) -> dict[str, Any]:
    report = await score_pairs(services, body)
    scores = [s for s in report.scores if s is not None]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    if body.top_n is not None:
        order = order[: body.top_n]
    rules = services.rules.current.rules
    return {
        "results": [
            RerankResult(
                index=i, score=scores[i], band=band_of(rules, scores[i]), document=body.documents[i]
            )
            for i in order
        ],
        "model": services.scorer.model_id,
        "rerank_status": report.status,
        "cache": {
            "status": report.cache_status,
            "hits": report.cache_hits,
            "misses": report.cache_misses,
        },
        "timings": report.timings,
    }


async def score_pairs(services: Services, body: RerankRequest) -> ScoreReport:
    """Scores for every document of the request, or ModelNotReady / ScoringFailed."""
    limit = services.settings.limits.max_rerank_documents
    if not body.documents:
        raise InvalidRequest("documents is empty", field="documents")
    if len(body.documents) > limit:
        raise InvalidRequest(
            f"{len(body.documents)} documents; at most {limit} per request", field="documents"
        )
    query = parse_query(body.query, services.normalizer)
    if not query.text and not services.scorer.reads_images:
        raise InvalidRequest(
            f"the scorer {services.scorer.model_id} reads text only: give query text",
            field="query.text",
        )
    state = services.scorer.state
    if not state.ready:
        raise ModelNotReady(
            f"model {services.scorer.model_id} is {state.status}"
            + (f": {state.reason}" if state.reason else ""),
            progress=state.progress,
        )
    documents = to_documents(body.documents)
    instruction = body.instruction or services.settings.scorer.instruction
    timeout_s = services.settings.limits.default_timeout_ms / 1000
    report = await services.pipeline.score(
        query, documents, instruction, time.perf_counter() + timeout_s
    )
    if isinstance(report.error, Overloaded):
        raise report.error  # 429: the queue is full, the caller should retry
    if report.status != "ok":
        raise ScoringFailed(report.reason, model=services.scorer.model_id)
    return report
