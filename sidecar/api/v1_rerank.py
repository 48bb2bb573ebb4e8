"""POST /v1/rerank: the reranking shape shared by Jina, Cohere and vLLM, served by this sidecar.

    {"model": "...", "query": "text" | {"text": ..., "image": url-or-data-uri},
     "documents": ["text", {"text": ..., "image": url}, ...], "top_n": 3,
     "return_documents": false, "instruction": "..."}
    -> {"model": "...", "results": [{"index": 0, "relevance_score": 0.93}, ...], "usage": {...}}

One sidecar serves one model: `model` is accepted for compatibility and the answer names the model
that scored. `instruction` is this sidecar's extension (Lychee's instruct); others ignore it. It
scores through the same pipeline as /api/rerank (cache included), so another sidecar's `remote`
scorer can use it as its model.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sidecar.api.deps import ServicesDep
from sidecar.api.mapping import as_rerank_request, rerank_inputs
from sidecar.api.models import V1RerankRequest

router = APIRouter()


@router.post("/v1/rerank")
async def v1_rerank(body: V1RerankRequest, services: ServicesDep) -> dict[str, Any]:
    report = await services.pipeline.rerank(*rerank_inputs(as_rerank_request(body), services))
    scores = [s if s is not None else 0.0 for s in report.scores]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[: body.top_n]
    results = []
    for i in order:
        result: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
        if body.return_documents:
            doc = body.documents[i]
            result["document"] = (
                {"text": doc} if isinstance(doc, str) else doc.model_dump(exclude_none=True)
            )
        results.append(result)
    return {
        "model": services.scorer.model_id,
        "results": results,
        "usage": {"documents": len(body.documents)},
        "meta": {
            "cache_hits": report.cache_hits,
            "flags": {str(i): flags for i, flags in report.flags.items()},
        },
    }
