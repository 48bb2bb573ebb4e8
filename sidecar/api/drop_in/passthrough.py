"""Every other method and path of the engine's API: sent on to the engine unchanged (or, on the
embedded engine, answered from its read-only subset).

In order, for a request no other route took:
1. a path under one of the sidecar's own routes (`/search/x`, `/api/...`, `/ui/a/b`...) is the
   sidecar's 404, never the engine's: its own routes keep precedence (under `/_engine`, where
   the drop-in is alone, every path is the engine's: see `prefix`);
2. on the embedded engine, its media types are checked as the engines check them (406, 400);
   an engine judges those of what it answers itself;
3. the index it names must be in `engine.allowed_indices` (a cluster-level read names `_all`;
   `_mget` and `_msearch/template` bodies name their own), else the engine-shaped 403;
4. a write (`_bulk`, `_doc` PUT/POST/DELETE, index creation...) is the engine-shaped 403
   unless `engine.allow_writes`;
5. the request goes to the engine as it came (the sidecar's credentials instead of the
   caller's) and its answer streams back: status, headers and body, unparsed.

It is the app router's default (`passthrough`), not a route: whatever a route matches, by path
and method or by path alone (the 405), is that route's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocketClose

from sidecar.api.drop_in import embedded
from sidecar.api.drop_in.forward import forward, path_of
from sidecar.api.drop_in.prefix import ENGINE_ONLY
from sidecar.api.drop_in.targets import BODY_TARGETS, READ_POSTS, Target, body_indices, target_of
from sidecar.api.drop_in.wire import WireError, plain_wire, wire_for
from sidecar.api.mapping import allowed_index
from sidecar.errors import Forbidden, SidecarError
from sidecar.services import Services

# APIs named in the metrics' route label; any other is `{api}` (labels stay few).
_LABELLED = READ_POSTS | {"_doc", "_source", "_mapping", "_cluster/health", "_bulk", "_update"}


async def passthrough(scope: Scope, receive: Receive, send: Send) -> None:
    """The router's default: what no route of the app matched (so every route, one added after
    this was installed too, keeps precedence; a wrong method on one is its 405)."""
    if scope["type"] != "http":
        await WebSocketClose()(scope, receive, send)
        return
    request = Request(scope, receive)
    response = await answer(request, request.app.state.services)
    await response(scope, receive, send)


async def answer(request: Request, services: Services) -> Response:
    if _under_sidecar_route(request):
        return JSONResponse({"error": "not_found", "message": "Not Found"}, 404)
    refused: WireError | None = None
    try:
        wire = wire_for(request, services)
    except WireError as exc:  # the engine judges the media types of what it answers itself
        wire, refused = plain_wire(services), exc
    target: Target | None = None
    try:
        target = target_of(request.method, path_of(request).decode("latin-1"))
        if services.proxy is not None or embedded.in_subset(request.method, target):
            request.scope["route"] = _Label(_label(target))  # the metrics' and log's route
        raw = await request.body()
        check_allowed(target, raw, services)
        if target.write and not services.settings.engine.allow_writes:
            raise Forbidden(
                f"{request.method} {request.url.path} writes to the engine, which the sidecar "
                "does not allow (engine.allow_writes)",
                field="method",
            )
        if services.proxy is None:
            if refused is not None:
                return wire.refusal(refused)
            return await embedded.answer(request, target, raw, wire, services)
        return await forward(request, services, raw)
    except SidecarError as exc:
        return wire.error(exc, target.index if target is not None else None)


def check_allowed(target: Target, raw: bytes, services: Services) -> None:
    """Forbidden (403) naming the first index outside engine.allowed_indices."""
    if target.index:
        allowed_index(target.index, services)
    if target.api in BODY_TARGETS and not target.write:
        for index in body_indices(target.api, raw, target.index or "_all"):
            allowed_index(index, services)


def _under_sidecar_route(request: Request) -> bool:
    """True for a path under one of the sidecar's own routes (`/search/x`, `/ui/a/b`): the
    sidecar's 404, never the engine's."""
    if request.scope.get(ENGINE_ONLY):
        return False
    first = request.url.path.lstrip("/").split("/", 1)[0]
    return any(
        own == first and not own.startswith(("{", "_"))
        for own in (path.lstrip("/").split("/", 1)[0] for path in route_paths(request.app.routes))
    )


def route_paths(routes: Iterable[Any], prefix: str = "") -> Iterator[str]:
    """The path templates of the app's routes, through included routers and mounts."""
    for route in routes:
        inner = getattr(route, "routes", None)  # a Mount, a Router
        included = getattr(route, "original_router", None)  # FastAPI's included router
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from route_paths(included.routes, prefix + getattr(context, "prefix", ""))
        elif inner is not None:
            yield from route_paths(inner, prefix + str(getattr(route, "path", "")))
        elif isinstance(route, BaseRoute) and isinstance(path := getattr(route, "path", None), str):
            yield prefix + path


@dataclass(frozen=True)
class _Label:
    path: str  # read by the request middleware as the route template


def _label(target: Target) -> str:
    api = target.api if target.api in _LABELLED else "{api}" if target.api else ""
    parts = ["{index}" if target.index else "", api, "{id}" if target.rest else ""]
    return "/" + "/".join(p for p in parts if p)
