"""The request middleware: request id, one log line per request, HTTP metrics.

A plain ASGI middleware (no BaseHTTPMiddleware) so it sees the matched route's template that the
router writes into the scope, and adds nothing between the route and the response stream.

- Request id: the caller's `X-Request-ID` when it is a sane token, else a fresh one; set in the
  logging context (every log line of the request carries it) and echoed in the response header.
- One info line per request: route template (never the raw path), status, duration, and for
  searches the window, cache hits/misses/status, rerank status and reason, stage timings; the
  query text only when `log_queries` is on.
- Metrics: request count and latency by route template, method and status; for searches the
  outcome the route left in `request.state` (see `remember_search`), for the rerank routes
  their score report (see `remember_scoring`).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidecar import logs
from sidecar.errors import INTERNAL_ERROR
from sidecar.observability.metrics import Metrics
from sidecar.pipeline import SearchOutcome
from sidecar.scoring_service import ScoreReport

log = logging.getLogger("sidecar.request")

HEADER = "x-request-id"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_STATE_KEY = "search_record"
_INTERNAL = json.dumps(INTERNAL_ERROR).encode()


@dataclass(frozen=True)
class SearchRecord:
    outcome: SearchOutcome
    query_text: str


def remember_search(request: Request, outcome: SearchOutcome, query_text: str) -> None:
    """Called by the search route: hands the outcome to the middleware (metrics and log line)."""
    setattr(request.state, _STATE_KEY, SearchRecord(outcome, query_text))


def remember_scoring(request: Request, report: ScoreReport) -> None:
    """Called by the rerank routes: hands their score report to the middleware, so the pair
    cache and model stages of an engine's rerank call show like a search's."""
    setattr(request.state, _STATE_KEY, report)


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == HEADER.encode():
            candidate = value.decode("latin-1").strip()
            if _SANE_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


ARRIVED = "arrived"  # request.state key: the perf_counter instant the request came in


def arrived(request: Request) -> float | None:
    """When `request` arrived (RequestMiddleware), or None outside it."""
    value = getattr(request.state, ARRIVED, None)
    return value if isinstance(value, float) else None


class RequestMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, log_queries: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.log_queries = log_queries

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_from(scope)
        token = logs.request_id.set(rid)
        started = time.perf_counter()
        # when the request arrived: a route's Deadline counts from here, body reading included
        scope.setdefault("state", {})[ARRIVED] = started
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                headers = [(k, v) for k, v in message.get("headers", []) if k != HEADER.encode()]
                headers.append((HEADER.encode(), rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # The app's 500 handler (outside this middleware) logs the exception chain with
            # this request id, so the id stays set; the caller still gets it in the header.
            status = 500
            if not response_started:
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send_with_id({"type": "http.response.body", "body": _INTERNAL})
            self._finish(scope, status, started)
            raise
        finally:
            self.metrics.in_flight.dec()
        self._finish(scope, status, started)
        logs.request_id.reset(token)

    def _finish(self, scope: Scope, status: int, started: float) -> None:
        seconds = time.perf_counter() - started
        route = _route_template(scope)
        method = str(scope.get("method", ""))
        self.metrics.observe_request(route, method, status, seconds)
        fields: dict[str, Any] = {
            "route": route,
            "method": method,
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
        }
        record = scope.get("state", {}).get(_STATE_KEY)
        if isinstance(record, SearchRecord):
            self.metrics.observe_search(record.outcome)
            fields.update(_search_fields(record, self.log_queries))
        elif isinstance(record, ScoreReport):
            self.metrics.observe_scoring(record)
            fields.update(_scoring_fields(record))
        # 500 is a bug; 503/504 are dependencies (engine down, model loading) the caller is told.
        level = (
            logging.ERROR if status == 500 else logging.WARNING if status > 500 else logging.INFO
        )
        log.log(level, "request", extra=fields)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


def _search_fields(record: SearchRecord, log_queries: bool) -> dict[str, Any]:
    outcome, report = record.outcome, record.outcome.report
    fields: dict[str, Any] = {
        "window": outcome.window,
        "rerank_status": report.status,
        "reason": report.reason,
        "cache_status": report.cache_status,
        "cache_hits": report.cache_hits,
        "cache_misses": report.cache_misses,
        "timings": outcome.timings,
        "rules_version": outcome.rules_version,
        "engine": outcome.engine,
    }
    if log_queries:
        fields["query"] = record.query_text
    return fields


def _scoring_fields(report: ScoreReport) -> dict[str, Any]:
    return {
        "documents": len(report.scores),
        "cache_status": report.cache_status,
        "cache_hits": report.cache_hits,
        "cache_misses": report.cache_misses,
        "timings": report.timings,
    }
