"""POST /v1/rerank: the reranking shape shared by Jina, Cohere and vLLM, served by this sidecar.

    {"model": "...", "query": "text" | {"text": ..., "image": url-or-data-uri},
     "documents": ["text", {"text": ..., "image": url}, ...], "top_n": 3,
     "return_documents": false, "instruction": "..."}
    -> {"id": "<request id>", "model": "...", "results": [{"index": 0, "relevance_score": 0.93},
        ...], "usage": {...}, "meta": {"api_version": {"version": "1"}, "billed_units": {...},
        "cache_hits": 0, "flags": {...}}}

One sidecar serves one model: `model` is accepted for compatibility and the answer names the model
that scored. `instruction` is this sidecar's extension (Lychee's instruct); others ignore it. It
scores through the same pipeline as /api/rerank (cache included), so another sidecar's `remote`
scorer can use it as its model. `id` (the request id, as in the `X-Request-ID` header),
`meta.api_version` and `meta.billed_units` are Cohere's v1 fields; Cohere's v2 shape is
/v2/rerank (api.v2_rerank).

The engines call this route as their own reranker (OpenSearch's ML Commons connector with the
cohere pre/post process functions, Elasticsearch's `custom` inference service), and map scores
back to their hits by `index`, so:

- Every document's index comes exactly once when `top_n` is absent or covers them all; a
  `top_n` above the number of documents is a limit, not an error (all of them, as Cohere's
  "limits the number of returned results" reads). A document the scorer gave no usable score
  is answered last with `relevance_score` 0.0 and flagged `unscored` in `meta.flags`.
- `relevance_score` is always a JSON float (never NaN, an infinity or an integer literal: the
  post process casts it to a double); `index` an integer.
- The budget (`timeout_ms`, default limits.rerank_timeout_ms) counts from the request's
  arrival, body reading included, as /search's does.
- Errors are the sidecar's own (`error`, `message`, `field`): 422 for an empty `documents`, a
  missing `query`, a `top_n` below 1; 429 when the scoring queue is full; 503 while the model
  loads or when scoring fails or misses the deadline.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sidecar.api.compat import flags_of, ranking, score_for, search_units
from sidecar.api.deps import ServicesDep
from sidecar.api.mapping import as_rerank_request
from sidecar.api.models import V1RerankRequest
from sidecar.logs import request_id
from sidecar.scoring.base import languages_of

router = APIRouter()


@router.post("/v1/rerank")
async def v1_rerank(
    body: V1RerankRequest, services: ServicesDep, request: Request
) -> dict[str, Any]:
    report = await score_for(request, services, as_rerank_request(body))
    results = []
    for i, score in ranking(report, body.top_n):
        result: dict[str, Any] = {"index": i, "relevance_score": score}
        if body.return_documents:
            doc = body.documents[i]
            result["document"] = (
                {"text": doc} if isinstance(doc, str) else doc.model_dump(exclude_none=True)
            )
        results.append(result)
    return {
        "id": request_id.get() or "",
        "model": services.scorer.model_id,
        "results": results,
        "usage": {"documents": len(body.documents)},
        "meta": {
            "api_version": {"version": "1"},
            "billed_units": {"search_units": search_units(len(body.documents))},
            "cache_hits": report.cache_hits,
            "flags": {str(i): f for i, f in sorted(flags_of(report).items())},
            # what this scorer reads: a `remote` front in front of this sidecar adopts it
            "languages": list(languages_of(services.scorer)),
        },
    }
