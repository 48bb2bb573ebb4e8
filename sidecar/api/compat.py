"""What the routes that speak other servers' rerank APIs share (/v1/rerank, /v2/rerank, /rerank):
the ranking of a scored request, and a route class whose errors come out in that API's shape.

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

from sidecar.api.validation import invalid_request
from sidecar.errors import InvalidRequest, SidecarError, status_for
from sidecar.pipeline import ScoreReport

# (error, the sidecar's status for it) -> the imitated API's answer
Shape = Callable[[SidecarError, int], JSONResponse]

# Cohere counts a search unit per query with up to 100 documents; the answers count the same.
DOCUMENTS_PER_SEARCH_UNIT = 100


def ranking(report: ScoreReport, top_n: int | None = None) -> list[tuple[int, float]]:
    """(request position, score) from the best score down, ties in request order; the first
    `top_n` when it is given."""
    scores = [s if s is not None else 0.0 for s in report.scores]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[:top_n]
    return [(i, scores[i]) for i in order]


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
