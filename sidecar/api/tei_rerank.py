"""POST /rerank: the text-embeddings-inference (Hugging Face TEI) rerank shape, so tools written
for a TEI reranker use this sidecar by changing a base URL.

    {"query": "text", "texts": ["text", ...], "raw_scores": false, "return_text": false,
     "truncate": false, "truncation_direction": "right"}
    -> [{"index": 0, "score": 0.93, "text": "..."?}, ...]   every text, best score first

Scores are the model's, in [0, 1]. `raw_scores: true` answers their log-odds, log(p / (1 - p)),
the logit before TEI's sigmoid (for Lychee that is the yes-minus-no logit it scores from; for
MiniLM a monotone rescaling); the order is the same. Texts are always cut to
scorer.max_doc_chars, so `truncate` is accepted and a long text is never refused;
`truncation_direction: left` keeps the end of a long text instead of its start. Keys TEI does not
know are ignored, as TEI ignores them; `instruction` and `timeout_ms` are this sidecar's
extensions. Same pipeline as /v1/rerank: score cache, micro-batcher, deadline and limits.

Errors are TEI's `{"error", "error_type"}` with TEI's statuses: 400 `Empty` (no texts), 413
`Validation` (more texts than limits.max_rerank_documents), 422 `Validation` (a body that does
not validate), 429 `Overloaded`, 503 `Unhealthy` (the model is not ready), 424 `Backend`
(scoring failed or missed its deadline).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sidecar.api.compat import described, ranking, score_for, shaped_route
from sidecar.api.deps import ServicesDep
from sidecar.api.models import TEIRerankRequest
from sidecar.errors import InvalidRequest, ModelNotReady, Overloaded, ScoringFailed, SidecarError

# How far from 0 and 1 a score is taken for its log-odds, so 0 and 1 stay finite in JSON.
_EPSILON = 1e-7

# TEI's error types and the statuses its router gives them; anything else keeps its own status.
_TYPES: tuple[tuple[type[SidecarError], str, int], ...] = (
    (InvalidRequest, "Validation", 422),
    (Overloaded, "Overloaded", 429),
    (ModelNotReady, "Unhealthy", 503),
    (ScoringFailed, "Backend", 424),
)


def tei_error(error: SidecarError, status: int) -> JSONResponse:
    kind, code = "Backend", status
    for cls, name, tei_status in _TYPES:
        if isinstance(error, cls):
            kind, code = name, tei_status
            break
    return _refuse(code, described(error), kind, error.to_json())


def _refuse(status: int, message: str, kind: str, sidecar: dict[str, Any]) -> JSONResponse:
    return JSONResponse(
        {"error": message, "error_type": kind, "sidecar": sidecar}, status_code=status
    )


router = APIRouter(route_class=shaped_route(tei_error))


@router.post("/rerank", response_model=None)
async def tei_rerank(
    body: TEIRerankRequest, services: ServicesDep, request: Request
) -> list[dict[str, Any]] | JSONResponse:
    limit = services.settings.limits.max_rerank_documents
    if not body.texts:
        empty = InvalidRequest("`texts` cannot be empty", field="texts")
        return _refuse(400, empty.message, "Empty", empty.to_json())
    if len(body.texts) > limit:
        over = InvalidRequest(
            f"batch size {len(body.texts)} > maximum allowed batch size {limit}", field="texts"
        )
        return _refuse(413, over.message, "Validation", over.to_json())
    report = await score_for(request, services, body)
    ranks = []
    for i, score in ranking(report):
        rank: dict[str, Any] = {"index": i, "score": _log_odds(score) if body.raw_scores else score}
        if body.return_text:
            rank["text"] = body.texts[i]
        ranks.append(rank)
    return ranks


def _log_odds(p: float) -> float:
    p = min(max(p, _EPSILON), 1 - _EPSILON)
    return math.log(p / (1 - p))
