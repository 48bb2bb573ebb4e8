"""POST /v2/rerank: Cohere's v2 rerank shape, so the `cohere` SDK's `ClientV2(base_url=...)` and
tools written for it rerank through this sidecar.

    {"model": "...", "query": "text", "documents": ["text", ...], "top_n": 3,
     "max_tokens_per_doc": 512}
    -> {"id": "<request id>", "results": [{"index": 0, "relevance_score": 0.93}, ...],
        "meta": {"api_version": {"version": "2"}, "billed_units": {"search_units": 1}, ...},
        "model": "..."}

Documents are plain strings (v2 has no document objects or `return_documents`). `model` and
`priority` are accepted and ignored (one sidecar serves one model; the answer names it);
`relevant_spans` only with `mode: disabled`. `instruction` and `timeout_ms` are this sidecar's
extensions, as on /v1/rerank. `id` is the request id (the `X-Request-ID` header and the log
lines). Same pipeline as /v1/rerank: score cache, micro-batcher, deadline and limits.

Errors are Cohere's `{"id", "message"}` with the sidecar's own error under `sidecar`: a request
that does not validate is 400 ("invalid request: ..."), as Cohere answers it; 429 when the
scoring queue is full; 503 while the model loads or when scoring fails or misses its deadline.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sidecar.api.compat import described, ranking, score_for, search_units, shaped_route
from sidecar.api.deps import ServicesDep
from sidecar.api.mapping import v2_as_rerank_request
from sidecar.api.models import V2RerankRequest
from sidecar.errors import InvalidRequest, SidecarError
from sidecar.logs import request_id


def cohere_error(error: SidecarError, status: int) -> JSONResponse:
    invalid = isinstance(error, InvalidRequest)
    body = {
        "id": request_id.get() or "",
        "message": f"invalid request: {described(error)}" if invalid else error.message,
        "sidecar": error.to_json(),
    }
    return JSONResponse(body, status_code=400 if invalid else status)


router = APIRouter(route_class=shaped_route(cohere_error))


@router.post("/v2/rerank")
async def v2_rerank(
    body: V2RerankRequest, services: ServicesDep, request: Request
) -> dict[str, Any]:
    report = await score_for(request, services, v2_as_rerank_request(body))
    results = [{"index": i, "relevance_score": s} for i, s in ranking(report, body.top_n)]
    return {
        "id": request_id.get() or "",
        "results": results,
        "meta": {
            "api_version": {"version": "2"},
            "billed_units": {"search_units": search_units(len(body.documents))},
            "cache_hits": report.cache_hits,
        },
        "model": services.scorer.model_id,
    }
