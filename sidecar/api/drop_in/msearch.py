"""`POST|GET /{index}/_msearch` (and `/_msearch`): many searches in one request, each one
reranked as `_search` reranks it.

The body is NDJSON, a header line (`{"index": ...}`, `{}` for the path's index or else the
default index) then a search body line, per search; the answer is the engines' JSON
`{"took", "responses": [...]}` with `status` in every item. One search failing does not fail
the others: its item is the engine-shaped error with its status (an index outside
`engine.allowed_indices` is that item's 403). A later page (`search_after`, of a point in time
or not) runs on the engine as it is; the first page of a point in time is reranked within
itself, as `_search` reranks it. Searches run concurrently, at most
`max_concurrent_searches` at once (8 by default), at most `MAX_SEARCHES` per request.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sidecar.api.deps import ServicesDep
from sidecar.api.drop_in import url_params
from sidecar.api.drop_in.forward import engine_json
from sidecar.api.drop_in.search import engine_paged, search_answer
from sidecar.api.drop_in.search_request import search_body
from sidecar.api.drop_in.wire import WireError, error_body, loads, plain_wire, wire_for
from sidecar.api.mapping import allowed_index, refuse_scripts
from sidecar.errors import InvalidRequest, SidecarError
from sidecar.services import Services

router = APIRouter()

MAX_SEARCHES = 200
DEFAULT_CONCURRENCY = 8
# Header keys of an _msearch line; the ones that change which documents match are refused.
_HEADER_KEYS = {
    "index",
    "preference",
    "request_cache",
    "allow_no_indices",
    "expand_wildcards",
    "ignore_unavailable",
    "ignore_throttled",
    "allow_partial_search_results",
    "ccs_minimize_roundtrips",
    "search_type",
    "routing",
}
_REFUSED_HEADER_KEYS = {"routing"}


@router.api_route("/_msearch", methods=["GET", "POST"], include_in_schema=False)
async def default_index_msearch(request: Request, services: ServicesDep) -> Response:
    return await _route(None, request, services)


@router.api_route("/{index}/_msearch", methods=["GET", "POST"])
async def engine_msearch(index: str, request: Request, services: ServicesDep) -> Response:
    return await _route(index, request, services)


async def _route(index: str | None, request: Request, services: Services) -> Response:
    try:
        wire = wire_for(request, services)
    except WireError as exc:
        return plain_wire(services).refusal(exc)
    started = time.perf_counter()
    default = index if index is not None else services.settings.engine.default_index
    params = request.query_params
    try:
        searches = parse_searches(await request.body())
        # typed_keys renames only aggregations and suggesters: accepted where there are none
        checked = url_params.without_idle_typed_keys(params, [b for _, b in searches])
        url_params.check_known(checked, url_params.MSEARCH, request.url.path)
        if params.get("search_type", "query_then_fetch") != "query_then_fetch":
            raise InvalidRequest("the sidecar reranks with search_type query_then_fetch only")
        concurrency = (
            url_params.integer(params, "max_concurrent_searches")
            if "max_concurrent_searches" in params
            else DEFAULT_CONCURRENCY
        )
    except SidecarError as exc:
        return wire.error(exc, default)
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(header: dict[str, Any], body: Any) -> dict[str, Any]:
        async with gate:
            return await _item(header, body, default, services, request)

    responses = await asyncio.gather(*(one(h, b) for h, b in searches))
    answer = {"took": round((time.perf_counter() - started) * 1000), "responses": responses}
    try:
        return wire.respond(url_params.shape_answer(answer, params))
    except SidecarError as exc:
        return wire.error(exc, default)


def parse_searches(raw: bytes) -> list[tuple[dict[str, Any], Any]]:
    """(header, body) pairs of an NDJSON _msearch body; InvalidRequest naming the line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"the body is not UTF-8 (byte {exc.start})", field="body") from exc
    lines = text.split("\n")
    if lines and not lines[-1].strip():
        lines.pop()  # the newline that ends the last line
    if not lines:
        raise InvalidRequest("msearch request must contain at least one search", field="body")
    if len(lines) % 2:
        raise InvalidRequest(
            f"line {len(lines)}: a header without its search body (NDJSON: a header line, "
            "then a body line, per search)",
            field="body",
        )
    if len(lines) // 2 > MAX_SEARCHES:
        raise InvalidRequest(
            f"{len(lines) // 2} searches; at most {MAX_SEARCHES} per _msearch", field="body"
        )
    out = []
    for i in range(0, len(lines), 2):
        header = loads(lines[i], f"line {i + 1}") if lines[i].strip() else {}
        if not isinstance(header, dict):
            raise InvalidRequest(f"line {i + 1}: a header must be a JSON object", field="body")
        unknown = sorted(set(header) - _HEADER_KEYS)
        if unknown:
            raise InvalidRequest(
                f"line {i + 1}: key [{unknown[0]}] is not supported in the metadata section",
                field="body",
            )
        body = loads(lines[i + 1], f"line {i + 2}") if lines[i + 1].strip() else {}
        out.append((header, body))
    return out


async def _item(
    header: dict[str, Any], body: Any, default: str, services: Services, request: Request
) -> dict[str, Any]:
    index = default
    try:
        index = _index(header, default)
        refused = sorted(_REFUSED_HEADER_KEYS & set(header))
        if refused:
            raise InvalidRequest(
                f"the sidecar reranks searches without [{refused[0]}]", field=refused[0]
            )
        if header.get("search_type", "query_then_fetch") != "query_then_fetch":
            raise InvalidRequest("the sidecar reranks with search_type query_then_fetch only")
        allowed_index(index, services)
        search = search_body(body)
        if engine_paged(search, {}):
            refuse_scripts(search, services)
            path = "/_search" if "pit" in search else f"/{quote(index, safe=',*')}/_search"
            answer = await engine_json(services, request, path.encode(), search)
            answer.setdefault("status", 200)
            return answer
        answer = await search_answer(index, search, services, request, item=True)
        answer["status"] = 200
        return answer
    except SidecarError as exc:
        return error_body(exc, index)[0]


def _index(header: dict[str, Any], default: str) -> str:
    value = header.get("index")
    if value is None:
        return default
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise InvalidRequest("index must be a string or a list of strings", field="index")
    return value or default
