"""What the routes that speak other servers' rerank APIs share (/v1/rerank, /v2/rerank, /rerank):
the scoring of a request (`score_for`, /api/rerank's too), the ranking of a scored request, and a
route class whose errors come out in that API's shape.

A tool written for Cohere or text-embeddings-inference reads errors its own way (Cohere's SDK
raises by status and keeps `{"message"}`; TEI clients read `{"error", "error_type"}`), so these
routes answer every error, the body that does not validate included, in the shape of the API they
imitate, while the rest of the sidecar keeps its own. The status comes from the one table in
`sidecar.errors` unless the imitated API answers that error with another status.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from sidecar.api.mapping import rerank_inputs, tei_rerank_inputs
from sidecar.api.models import RerankRequest, TEIRerankRequest
from sidecar.api.validation import invalid_request
from sidecar.errors import InvalidRequest, SidecarError, status_for
from sidecar.observability.middleware import remember_scoring
from sidecar.scoring_service import ScoreReport
from sidecar.services import Services

# (error, the sidecar's status for it) -> the imitated API's answer
Shape = Callable[[SidecarError, int], JSONResponse]

# Cohere counts a search unit per query with up to 100 documents; the answers count the same.
DOCUMENTS_PER_SEARCH_UNIT = 100


# The flag of a document the scorer gave no usable score (None, NaN or an infinity).
UNSCORED = "unscored"
# What such a document is answered with: the bottom of the [0, 1] range, after every real score.
UNSCORED_SCORE = 0.0
# Decimals of a score on the wire. OpenSearch's ML Commons reads the answer with json-smart,
# which makes a number written with more than 18 characters a BigDecimal, and its Cohere
# post-process then fails casting it to Double (the page silently keeps the engine's order):
# Python writes a float32-derived score with up to 17 significant digits ("0.21164274215698242").
# Eight decimals keep a score in [0, 1] to 10 characters and every model's order in practice.
WIRE_DECIMALS = 8


async def score_for(
    request: Request, services: Services, body: RerankRequest | TEIRerankRequest
) -> ScoreReport:
    """`body` scored through the pipeline, its budget counted from the request's arrival (body
    reading included), and the report handed to the request's metrics and log line. A TEI
    request keeps its own mapping (api.mapping.tei_rerank_inputs: its truncation, its field
    names in errors); the other shapes come as the /api/rerank request of the same meaning."""
    if isinstance(body, TEIRerankRequest):
        inputs = tei_rerank_inputs(body, services, request)
    else:
        inputs = rerank_inputs(body, services, request)
    report = await services.pipeline.rerank(*inputs)
    remember_scoring(request, report)  # metrics and the request's log line
    return report


def usable(score: float | None) -> float | None:
    """`score` as a plain float, or None when there is none to give: NaN and the infinities
    are not JSON numbers, and the engines read `relevance_score` as a double."""
    if score is None:
        return None
    value = float(score)
    return value if math.isfinite(value) else None


def ranking(report: ScoreReport, top_n: int | None = None) -> list[tuple[int, float]]:
    """(request position, score) from the best score down (the order of the full scores, each
    written with WIRE_DECIMALS), ties in request order. Every
    position comes once, a document without a usable score too: last, with UNSCORED_SCORE
    (an engine maps scores back by position, so a missing one would break its page). The
    first `top_n` when it is given; a `top_n` above the count is all of them (a limit)."""
    scores = [usable(s) for s in report.scores]
    order = sorted(range(len(scores)), key=lambda i: (scores[i] is None, -(scores[i] or 0.0)))
    return [(i, _or_unscored(scores[i])) for i in order[:top_n]]


def flags_of(report: ScoreReport) -> dict[int, list[str]]:
    """Each position's flags, UNSCORED added where `ranking` answers UNSCORED_SCORE."""
    flags = {i: list(f) for i, f in report.flags.items()}
    for i, score in enumerate(report.scores):
        if usable(score) is None:
            flags.setdefault(i, []).append(UNSCORED)
    return flags


def _or_unscored(score: float | None) -> float:
    return UNSCORED_SCORE if score is None else round(score, WIRE_DECIMALS)


def search_units(documents: int) -> int:
    """Cohere's `meta.billed_units.search_units` for a request of `documents` documents."""
    return math.ceil(documents / DOCUMENTS_PER_SEARCH_UNIT)


def described(error: SidecarError) -> str:
    """The error's message with the field it names in front, for APIs whose error is one string."""
    if error.field and not error.message.startswith(error.field):
        return f"{error.field}: {error.message}"
    return error.message


def shaped_route(shape: Shape) -> type[APIRoute]:
    """An APIRoute class whose every error, a body that does not validate or cannot be read
    included, is answered by `shape` (pass it as `APIRouter(route_class=...)`)."""

    class ShapedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def answer(request: Request) -> Response:
                error: SidecarError
                try:
                    return await handler(request)
                except RequestValidationError as exc:
                    error = invalid_request(exc.errors())
                except StarletteHTTPException as exc:  # FastAPI: a body it cannot read
                    if exc.status_code >= 500:
                        raise
                    error = InvalidRequest(str(exc.detail), field="body")
                except SidecarError as exc:
                    error = exc
                return shape(error, status_for(error))

            return answer

    return ShapedRoute
