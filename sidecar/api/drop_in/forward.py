"""A request sent on to the engine as it came, and the engine's answer streamed back unparsed:
its status, its headers (all but the hop-by-hop ones) and its body bytes as they arrive."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from fastapi import Request
from fastapi.responses import StreamingResponse

from sidecar.backends import dsl
from sidecar.deadline import Deadline
from sidecar.errors import EngineUnavailable, InvalidRequest
from sidecar.services import Services


async def forward(
    request: Request, services: Services, body: bytes, raw_path: bytes | None = None
) -> StreamingResponse:
    """Send `request` (with `body`, already read) to the engine; `raw_path` replaces its path."""
    proxy = services.proxy
    if proxy is None:
        raise InvalidRequest(
            f"the {services.backend.name} engine answers only the drop-in subset; configure "
            "Elasticsearch or OpenSearch for the rest of the API",
            field="path",
        )
    answer = await proxy.send(
        request.method,
        raw_path if raw_path is not None else path_of(request),
        request.scope.get("query_string", b""),
        request.headers.items(),
        body,
    )
    return StreamingResponse(answer.stream(), status_code=answer.status, headers=_headers(answer))


async def engine_json(
    services: Services,
    request: Request | None,
    raw_path: bytes,
    body: dict[str, Any],
    deadline: Deadline | None = None,
) -> dict[str, Any]:
    """POST `body` to the engine at `raw_path` and read its JSON answer, for the few engine
    answers the sidecar adds to (a field-sorted page, an `_msearch` item in engine order). An
    engine error is the sidecar's error for it, with the engine's type and reason."""
    proxy = services.proxy
    if proxy is None:
        raise InvalidRequest(
            f"the {services.backend.name} engine cannot run this search: it takes a single "
            "match or multi_match query (configure Elasticsearch or OpenSearch)",
            field="body",
        )
    headers = [("content-type", "application/json"), ("accept", "application/json")]
    user_agent = request.headers.get("user-agent") if request is not None else None
    if user_agent:
        headers.append(("user-agent", user_agent))
    answer = await proxy.send("POST", raw_path, b"", headers, json.dumps(body).encode(), deadline)
    raw = await answer.read()
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise EngineUnavailable(
            f"{proxy.engine} answered {answer.status} with a body that is not JSON",
            engine=proxy.engine,
        ) from exc
    index = raw_path.decode("latin-1").strip("/").split("/")[0]
    if answer.status != 200:
        raise dsl.error_for_status(proxy.engine, unquote(index), answer.status, parsed)
    if not isinstance(parsed, dict):
        raise EngineUnavailable(f"{proxy.engine} answered {parsed!r:.80}", engine=proxy.engine)
    return parsed


def path_of(request: Request) -> bytes:
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw
    return str(request.url.path).encode()


def _headers(answer: Any) -> dict[str, str]:
    # StreamingResponse takes a mapping: join repeated headers as HTTP allows (except cookies,
    # which the engines never set)
    out: dict[str, str] = {}
    for key, value in answer.headers:
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out
