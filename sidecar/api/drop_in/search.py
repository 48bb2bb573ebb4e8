"""`POST|GET /{index}/_search` (and `/_search`): one search body reranked, answered in the
engine's shape.

The body runs on the engine with `size` raised to the rerank window, the window is reranked,
and the answer has the engine's shape (`search_response`). What to rerank with is read from
the body (`search_request`: `ext.rerank`, OpenSearch's `query_context`, or the query's text).
URL parameters are read as the engines read them (`q=` is a URI search; see `url_params`).

Kept in the engine's order: a body sorted by anything but `_score` (reranking would undo the
sort; `rerank.status: skipped`); and sent on to the engine unchanged, its answer streamed back:
a later page (`search_after`, with or without a point in time) and a scroll search
(`?scroll=`).

The first page of a point-in-time search (`pit`, no `search_after`) is reranked within itself:
its window is the page (`from + size`, up to limits.max_window), so the page holds the very hits
the engine's page holds, reordered. The answer keeps the engine's `pit_id`, and every hit's
`sort` is the page's continuation point (the engine's sort values of its last hit), so
`search_after` from any hit, the last one as clients take it, continues in the engine's order
with no hit repeated and none skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sidecar.api.deps import ServicesDep
from sidecar.api.drop_in import url_params
from sidecar.api.drop_in.forward import engine_json, forward
from sidecar.api.drop_in.search_request import (
    drop_in_field,
    in_time,
    pop_rerank,
    search_body,
    sorted_by_field,
    to_search_request,
)
from sidecar.api.drop_in.search_response import render
from sidecar.api.drop_in.wire import WireError, plain_wire, read_json, wire_for
from sidecar.api.mapping import allowed_index, deadline_for, refuse_scripts, search_params
from sidecar.errors import InvalidRequest, SidecarError
from sidecar.observability.middleware import remember_search
from sidecar.services import Services

router = APIRouter()


@router.api_route("/_search", methods=["GET", "POST"], include_in_schema=False)
async def default_index_search(request: Request, services: ServicesDep) -> Response:
    """`/_search` without an index searches the configured default index."""
    return await _route(None, request, services)


@router.api_route("/{index}/_search", methods=["GET", "POST"])
async def engine_search(index: str, request: Request, services: ServicesDep) -> Response:
    return await _route(index, request, services)


async def _route(index: str | None, request: Request, services: Services) -> Response:
    try:
        wire = wire_for(request, services)
    except WireError as exc:
        return plain_wire(services).refusal(exc)
    target = index if index is not None else services.settings.engine.default_index
    params = request.query_params
    try:
        allowed_index(target, services)  # before the body is read: the caller's boundary
        raw = await request.body()
        body = search_body(read_json(raw))
        if engine_paged(body, params):
            refuse_scripts(body, services)
            # a point in time names its indices itself; otherwise the path must name one
            path = None if index is not None or in_time(body) else _search_path(target)
            return await forward(request, services, raw, path)
        body = url_params.into_body(params, body, request.url.path)
        answer = await search_answer(target, body, services, request)
        return wire.respond(url_params.shape_answer(answer, params))
    except SidecarError as exc:
        return wire.error(exc, target)


def engine_paged(body: Mapping[str, Any], params: Mapping[str, str]) -> str | None:
    """Why this search must keep the engine's own paging, or None: a later `search_after`
    page (of a point in time or not), a scroll."""
    if body.get("search_after") is not None:
        return "search_after"
    return "scroll" if "scroll" in params else None


async def search_answer(
    index: str, body: dict[str, Any], services: Services, request: Request, *, item: bool = False
) -> dict[str, Any]:
    """The reranked (or, for a field sort, engine-ordered) answer to one search body, within
    its budget from the request's arrival. `item`: one search of an `_msearch`, whose metrics
    and log line are the whole request's."""
    refuse_scripts(body, services)
    if sorted_by_field(body):
        return await _engine_order(index, body, services, request)
    request_body, source_spec = to_search_request(index, body, services)
    try:
        params, deadline = search_params(request_body, services, request)
    except InvalidRequest as exc:
        raise drop_in_field(exc) from exc
    outcome = await services.pipeline.search(params, deadline)
    if not item:
        remember_search(request, outcome, params.query.text)  # metrics and the log line
    return render(outcome, index, source_spec, services, in_time=in_time(body))


async def _engine_order(
    index: str, body: dict[str, Any], services: Services, request: Request
) -> dict[str, Any]:
    """A field sort is the caller's order: the engine's own answer to the body (its `sort`
    values included, so `search_after` can continue it), with `rerank.status: skipped`."""
    engine_body = dict(body)
    rerank = pop_rerank(engine_body)
    limits = services.settings.limits
    offset, size = engine_body.get("from", 0), engine_body.get("size", 10)
    if not isinstance(offset, int) or not isinstance(size, int) or offset < 0 or size < 0:
        raise InvalidRequest("from and size must be non-negative integers", field="size")
    if offset + size > limits.max_result_window:
        raise InvalidRequest(
            f"from + size must not exceed {limits.max_result_window}", field="from"
        )
    if services.backend.name == "embedded":
        raise InvalidRequest("the embedded engine cannot sort by a field", field="sort")
    timeout_ms = rerank.get("timeout_ms", limits.default_timeout_ms)
    if not isinstance(timeout_ms, int) or not 1 <= timeout_ms <= limits.max_timeout_ms:
        raise InvalidRequest(
            f"timeout_ms must be an integer from 1 to {limits.max_timeout_ms}",
            field="ext.rerank.timeout_ms",
        )
    engine = deadline_for(request, timeout_ms, services).share(limits.engine_share)
    path = b"/_search" if in_time(engine_body) else _search_path(index)
    answer = await engine_json(services, request, path, engine_body, engine)
    for hit in answer.get("hits", {}).get("hits", []):
        if isinstance(hit, dict):
            hit["_rerank"] = None
    answer["rerank"] = {
        "status": "skipped",
        "reason": "the body sorts by a field: engine order kept",
    }
    return answer


def _search_path(index: str) -> bytes:
    return f"/{quote(index, safe=',*')}/_search".encode()
