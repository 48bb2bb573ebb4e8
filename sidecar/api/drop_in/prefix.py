"""The drop-in alone, under `/_engine`: for an index named like one of the sidecar's own routes.

At the root, the sidecar's routes come first: `/search`, `/metrics`, `/ui/...` are the
sidecar's, so an index called `search` or `metrics` cannot be reached there. Under the prefix
every path is the engine's (`/_engine/search/_count` counts the index `search`), and a client
takes it as its node URL (`Elasticsearch("http://sidecar:8080/_engine")`: the official clients
keep a URL's path as a prefix). No index can be named `_engine`: the engines refuse names that
start with `_`, so the prefix shadows nothing.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.routing import BaseRoute, Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX = "/_engine"
ENGINE_ONLY = "sidecar.engine_only"  # scope key: the sidecar's own routes do not apply


class EnginePrefix(BaseRoute):
    """A route that takes every path under PREFIX and hands it, prefix removed, to `app`: the
    drop-in's routes with the pass-through as their default."""

    def __init__(self, routes: APIRouter, default: ASGIApp) -> None:
        self.app = Router(routes=list(routes.routes), default=default)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            return Match.NONE, {}
        raw = scope.get("raw_path") or path.encode()
        return Match.FULL, {
            "path": path[len(PREFIX) :] or "/",
            "raw_path": raw[len(PREFIX) :] or b"/",
            ENGINE_ONLY: True,
        }

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
