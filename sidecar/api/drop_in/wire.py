"""What the engines' clients check on the wire, in one place: the media types a request may
use, the media type and product header of an answer, and the engines' error shape.

- Requests: a body may be `application/json`, `application/x-ndjson` or their
  `application/vnd.elasticsearch+...; compatible-with=8|9` forms (what the Elasticsearch
  clients send); another type is the engines' 406, another compatible version their 400
  (`media_type_header_exception`).
- Answers: `compatible-with=N` asked is `compatible-with=N` answered; otherwise the engine's
  own JSON type (`application/json`, OpenSearch adds `; charset=UTF-8`). Elasticsearch's
  clients refuse an answer without `X-Elastic-Product: Elasticsearch`: the sidecar sends it
  in front of Elasticsearch (whose answers the backend has checked carry it) and on the
  embedded engine, which imitates Elasticsearch; never in front of OpenSearch, which does not.
- Errors: `{"error": {"root_cause": [...], "type", "reason", "sidecar": {...}}, "status": N}`,
  the engine's `type` where the engine refused; the sidecar's own error rides under `sidecar`.
- JSON both ways through `backends.codec`: orjson's speed, the standard library's values (a
  NaN in an answer is still refused, an integer beyond 64 bits still exact).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from sidecar.backends import codec
from sidecar.errors import BadQuery, Forbidden, InvalidRequest, NotFound, SidecarError, status_for
from sidecar.services import Services

JSON = "application/json"
NDJSON = "application/x-ndjson"
_VND = re.compile(r"application/vnd\.elasticsearch\+(json|x-ndjson)", re.I)
_VERSION = re.compile(r"compatible-with\s*=\s*\"?(\d+)\"?", re.I)
COMPATIBLE = (8, 9)  # the versions Elasticsearch 9 serves (8 serves 7 and 8; 7 is refused)
_READABLE = {
    JSON,
    NDJSON,
    "application/vnd.elasticsearch+json",
    "application/vnd.elasticsearch+x-ndjson",
}
_OTHER_FORMATS = ("application/yaml", "application/cbor", "application/smile")
PRODUCT = {"X-Elastic-Product": "Elasticsearch"}


class EngineJSONResponse(JSONResponse):
    """A JSONResponse written by `codec.dumps`: the same JSON as Starlette's, faster."""

    def render(self, content: Any) -> bytes:
        return codec.dumps(content)


class WireError(Exception):
    """A request the engines refuse before reading it (media types): their status and body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(str(body))
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Wire:
    """How to answer one request: media type, the compatible version asked, extra headers."""

    media_type: str
    compat: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def respond(self, body: Any, status: int = 200) -> JSONResponse:
        return EngineJSONResponse(
            body, status, headers=dict(self.headers), media_type=self.media_type
        )

    def error(self, exc: SidecarError, index: str | None = None) -> JSONResponse:
        return self.respond(*error_body(exc, index))

    def refusal(self, exc: WireError) -> JSONResponse:
        return self.respond(exc.body, exc.status)


def plain_wire(services: Services) -> Wire:
    """The answer's shape when the request's own headers cannot be trusted (or are absent)."""
    kind = services.backend.name
    if kind == "opensearch":
        return Wire(f"{JSON}; charset=UTF-8")
    return Wire(JSON, headers=PRODUCT)


def wire_for(request: Request, services: Services) -> Wire:
    """How to answer `request`; WireError when its media types are ones the engines refuse."""
    plain = plain_wire(services)
    content_type = request.headers.get("content-type", "")
    accept = request.headers.get("accept", "")
    asked = _compat(accept, "Accept") or _compat(content_type, "Content-Type")
    base = content_type.split(";")[0].strip().lower()
    if base and base not in _READABLE:
        raise WireError(
            406, {"error": f"Content-Type header [{content_type}] is not supported", "status": 406}
        )
    if any(kind in accept.lower() for kind in _OTHER_FORMATS) and JSON not in accept.lower():
        raise WireError(
            406,
            {
                "error": f"Accept header [{accept}] is not supported: the sidecar answers "
                "reranked searches in JSON",
                "status": 406,
            },
        )
    if asked is None or services.backend.name == "opensearch":
        return plain
    return Wire(f"application/vnd.elasticsearch+json;compatible-with={asked}", asked, PRODUCT)


def _compat(value: str, header: str) -> int | None:
    if not _VND.search(value):
        return None
    found = _VERSION.search(value)
    if found is None:  # the vendor type without a version: Elasticsearch reads it as JSON
        return None
    version = int(found.group(1))
    if version not in COMPATIBLE:
        reason = (
            f"{header} version must be either version {COMPATIBLE[1]} or {COMPATIBLE[0]}, "
            f"but found {version}. {header}={value}"
        )
        cause = {
            "type": "media_type_header_exception",
            "reason": "Invalid media-type value on headers [Accept, Content-Type]",
        }
        raise WireError(
            400,
            {
                "error": {
                    "root_cause": [cause],
                    **cause,
                    "caused_by": {"type": "status_exception", "reason": reason},
                },
                "status": 400,
            },
        )
    return version


def error_body(exc: SidecarError, index: str | None = None) -> tuple[dict[str, Any], int]:
    """(the engine-shaped error body, its status): a malformed request is 400, as the engines
    answer it, not the 422 of /search."""
    status = 400 if isinstance(exc, InvalidRequest) else status_for(exc)
    kind = exc.details.get("engine_error") or _ERROR_TYPES.get(type(exc), f"{exc.code}_exception")
    cause: dict[str, Any] = {"type": kind, "reason": exc.message}
    if isinstance(exc, NotFound) and index is not None:
        cause.update({"resource.type": "index_or_alias", "resource.id": index, "index": index})
    error = {"root_cause": [cause], **cause, "sidecar": exc.to_json()}
    return {"error": error, "status": status}, status


_ERROR_TYPES: dict[type[SidecarError], str] = {
    InvalidRequest: "illegal_argument_exception",
    BadQuery: "illegal_argument_exception",
    NotFound: "index_not_found_exception",
    Forbidden: "security_exception",
}


def read_json(raw: bytes) -> Any:
    """A JSON body (empty: None); InvalidRequest naming the body when it cannot be read."""
    if not raw.strip():
        return None
    return loads(raw, "body")


def loads(raw: bytes | str, where: str) -> Any:
    try:
        return codec.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(
            f"{where}: malformed JSON: {exc.msg} at {exc.pos}", field=where
        ) from exc
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"{where}: not UTF-8 (byte {exc.start})", field=where) from exc
    except (ValueError, RecursionError) as exc:  # a 5,000-digit number; 10,000 levels deep
        raise InvalidRequest(
            f"{where}: unreadable JSON: {exc.__class__.__name__}", field=where
        ) from exc
