"""The drop-in endpoint: `POST|GET /{index}/_search` (and `/_search`) in the engine's own shape.

A gateway switches to the sidecar by changing only the engine URL it calls. The body is an
ordinary search body; it runs on the engine with `size` raised to the rerank window, the window
is reranked, and the answer has the engine's shape (`took`, `timed_out`, `_shards`,
`hits.total`, `hits.max_score`, `hits.hits[]` with `_score` = the final score) plus `_rerank` on
every hit and a top-level `rerank` key. Rerank parameters come in `ext.rerank`
({query, window, rules, instruction, timeout_ms, user_key}); without `ext.rerank.query` the text
is read from the first match/multi_match-like clause of the query (never under `must_not`).

A body that sorts by anything but `_score` is answered in the engine's order (reranking would
undo the sort) with `rerank.status: skipped`. Errors use the engine's error shape,
`{"error": {"root_cause", "type", "reason", "sidecar": {...}}, "status": N}`, with the sidecar's
statuses except that a malformed body or parameter is 400, as the engines answer it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from sidecar.api.deps import ServicesDep
from sidecar.api.mapping import allowed_index, refuse_scripts, search_params
from sidecar.api.models import SearchRequest, refuse_uncarriable
from sidecar.api.source_filter import source_entry
from sidecar.errors import (
    BadQuery,
    EngineTimeout,
    Forbidden,
    InvalidRequest,
    NotFound,
    SidecarError,
    status_for,
)
from sidecar.observability.middleware import remember_search
from sidecar.pipeline import PageHit, SearchOutcome
from sidecar.services import Services

router = APIRouter()

# Clauses whose text is the shopper's query: {field: text | {query: text}} or {query: text}.
_FIELD_CLAUSES = ("match", "match_phrase", "match_phrase_prefix", "match_bool_prefix")
_QUERY_CLAUSES = ("multi_match", "combined_fields")
_RERANK_KEYS = {"query", "window", "rules", "instruction", "timeout_ms", "user_key"}
# Where search_params names a field of /search, the drop-in caller wrote another.
_FIELD_NAMES = {
    "window": "ext.rerank.window",
    "timeout_ms": "ext.rerank.timeout_ms",
    "instruction": "ext.rerank.instruction",
    "rules": "ext.rerank.rules",
    "query": "ext.rerank.query",
    "raw_query": "query",
}
_ONE_SHARD = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}


@router.api_route("/_search", methods=["GET", "POST"], include_in_schema=False)
async def default_index_search(request: Request, services: ServicesDep) -> JSONResponse:
    """`/_search` without an index searches the configured default index."""
    return await _answer(services.settings.engine.default_index, request, services)


@router.api_route("/{index}/_search", methods=["GET", "POST"])
async def engine_search(index: str, request: Request, services: ServicesDep) -> JSONResponse:
    return await _answer(index, request, services)


async def _answer(index: str, request: Request, services: ServicesDep) -> JSONResponse:
    started = time.perf_counter()
    try:
        allowed_index(index, services)  # before the body is read: the caller's boundary
        body = await _read_body(request)
        refuse_scripts(body, services)
        if _sorted_by_field(body):
            return JSONResponse(await _engine_order(index, body, services, started))
        request_body, source_spec = to_search_request(index, body, services)
        try:
            params = search_params(request_body, services)
        except InvalidRequest as exc:
            raise _renamed(exc) from exc
        outcome = await services.pipeline.search(params)
        remember_search(request, outcome, params.query.text)  # metrics and the log line
    except SidecarError as exc:
        return engine_error(exc, index)
    return JSONResponse(render(outcome, index, source_spec, services))


async def _read_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    body: Any = {}
    if raw.strip():
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"malformed JSON: {exc.msg} at {exc.pos}", field="body") from exc
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"the body is not UTF-8 (byte {exc.start})", field="body") from exc
        except (ValueError, RecursionError) as exc:  # a 5,000-digit number; 10,000 levels deep
            raise InvalidRequest(
                f"unreadable JSON: {exc.__class__.__name__}", field="body"
            ) from exc
    if not isinstance(body, dict):
        raise InvalidRequest("the search body must be a JSON object", field="body")
    try:
        refuse_uncarriable(body)
    except ValueError as exc:
        raise InvalidRequest(f"body: {exc}", field="body") from None
    for name in ("from", "size"):  # the engines accept these as URL parameters too
        if name in request.query_params and name not in body:
            value = request.query_params[name]
            if not value.isdigit():
                raise InvalidRequest(f"{name} must be a non-negative integer", field=name)
            body[name] = int(value)
    return body


def to_search_request(
    index: str, body: Mapping[str, Any], services: Services
) -> tuple[SearchRequest, Any]:
    """(the /search request this body means, the caller's `_source` spec)."""
    engine_body = dict(body)
    rerank = _pop_rerank(engine_body)
    offset, size = engine_body.pop("from", 0), engine_body.pop("size", 10)
    # Absent `_source` means all of it, as on the engine (the backend adds the reranker's fields).
    source_spec = engine_body.setdefault("_source", True)
    text = rerank.get("query")
    if text is None:
        text = find_query_text(engine_body.get("query"))
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest(
            "no query text to rerank with: give ext.rerank.query, or a match or multi_match "
            "clause in the query",
            field="ext.rerank.query",
        )
    raw_query: dict[str, Any] | None = engine_body
    if services.backend.name == "embedded":
        _check_embedded(engine_body)
        raw_query = None
    try:
        request_body = SearchRequest.model_validate(
            {
                "query": text,
                "index": index,
                "from": offset,
                "size": size,
                **{k: v for k, v in rerank.items() if k != "query"},
                "raw_query": raw_query,
            }
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(
            f"{_FIELD_NAMES.get(where, where)}: {first['msg']}",
            field=_FIELD_NAMES.get(where, where),
        ) from exc
    return request_body, source_spec


def _pop_rerank(engine_body: dict[str, Any]) -> dict[str, Any]:
    ext = engine_body.pop("ext", None)
    if ext is None:
        return {}
    if not isinstance(ext, dict):
        raise InvalidRequest("ext must be an object", field="ext")
    rest = {k: v for k, v in ext.items() if k != "rerank"}
    if rest:  # other search extensions belong to the engine
        engine_body["ext"] = rest
    rerank = ext.get("rerank", {})
    if not isinstance(rerank, dict):
        raise InvalidRequest("ext.rerank must be an object", field="ext.rerank")
    unknown = sorted(set(rerank) - _RERANK_KEYS)
    if unknown:
        raise InvalidRequest(
            f"unknown key {unknown[0]!r}; known: {', '.join(sorted(_RERANK_KEYS))}",
            field=f"ext.rerank.{unknown[0]}",
        )
    return rerank


def find_query_text(node: Any) -> str | None:
    """The text of the first match/multi_match-like clause, depth first, outside `must_not`."""
    if isinstance(node, list):
        for item in node:
            found = find_query_text(item)
            if found:
                return found
        return None
    if not isinstance(node, dict):
        return None
    for key, value in node.items():
        if key in _QUERY_CLAUSES and isinstance(value, dict):
            if isinstance(value.get("query"), str) and value["query"].strip():
                return str(value["query"])
        elif key in _FIELD_CLAUSES and isinstance(value, dict):
            for spec in value.values():
                text = spec.get("query") if isinstance(spec, dict) else spec
                if isinstance(text, str) and text.strip():
                    return text
        elif key != "must_not":
            found = find_query_text(value)
            if found:
                return found
    return None


def _check_embedded(engine_body: Mapping[str, Any]) -> None:
    """The embedded engine runs query text, not DSL: accept only bodies that mean just that."""
    query = engine_body.get("query")
    plain = query is None or (
        isinstance(query, dict)
        and len(query) == 1
        and next(iter(query)) in ("match_all", *_FIELD_CLAUSES, *_QUERY_CLAUSES)
    )
    extra = set(engine_body) - {"query", "_source", "track_total_hits"}
    if not plain or extra:
        raise InvalidRequest(
            "the embedded engine runs query text only: send a single match or multi_match "
            "query (or ext.rerank.query), or configure Elasticsearch/OpenSearch",
            field="query",
        )


def _sorted_by_field(body: Mapping[str, Any]) -> bool:
    sort = body.get("sort")
    if sort is None:
        return False
    items = sort if isinstance(sort, list) else [sort]
    names = [next(iter(item), "") if isinstance(item, dict) else item for item in items]
    return any(name != "_score" for name in names)


async def _engine_order(
    index: str, body: dict[str, Any], services: Services, started: float
) -> dict[str, Any]:
    """A field sort is the caller's order: run the body as it is, answer the engine's page."""
    engine_body = dict(body)
    rerank = _pop_rerank(engine_body)
    offset, size = engine_body.pop("from", 0), engine_body.pop("size", 10)
    source_spec = engine_body.setdefault("_source", True)
    limits = services.settings.limits
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
    timeout = timeout_ms / 1000 * limits.engine_share
    backend = services.backend
    try:
        result = await asyncio.wait_for(
            backend.search(index, None, (), size, timeout, engine_body, offset),
            timeout=timeout + 0.05,
        )
    except TimeoutError as exc:
        raise EngineTimeout(
            f"{backend.name} did not answer within {timeout * 1000:.0f} ms", engine=backend.name
        ) from exc
    raw = result.raw
    hits = [
        {
            "_index": hit.index or index,
            "_id": hit.id,
            "_score": None,
            **source_entry(hit.source, source_spec),
            "_rerank": None,
        }
        for hit in result.hits
    ]
    return {
        "took": round((time.perf_counter() - started) * 1000),
        "timed_out": bool(raw.get("timed_out", False)),
        "_shards": raw.get("_shards", _ONE_SHARD),
        "hits": {
            "total": {"value": result.total, "relation": raw.get("total_relation", "eq")},
            "max_score": None,
            "hits": hits,
        },
        **({"aggregations": raw["aggregations"]} if "aggregations" in raw else {}),
        "rerank": {"status": "skipped", "reason": "the body sorts by a field: engine order kept"},
    }


def render(
    outcome: SearchOutcome, index: str, source_spec: Any, services: Services
) -> dict[str, Any]:
    raw = outcome.raw
    hits = [_hit(page_hit, index, source_spec) for page_hit in outcome.hits]
    reranked = [h["_score"] for h in hits if h["_rerank"]["reranked"]]
    scores = reranked or [h["_score"] for h in hits]
    report = outcome.report
    body: dict[str, Any] = {
        "took": round(outcome.timings.get("total_ms", 0.0)),
        "timed_out": bool(raw.get("timed_out", False)),
        "_shards": raw.get("_shards", _ONE_SHARD),
        "hits": {
            "total": {"value": outcome.total, "relation": raw.get("total_relation", "eq")},
            "max_score": max(scores) if scores else None,
            "hits": hits,
        },
    }
    if "aggregations" in raw:
        body["aggregations"] = raw["aggregations"]
    body["rerank"] = {
        "status": report.status,
        "reason": report.reason,
        "window": outcome.window,
        "dropped": outcome.dropped,
        "cache": report.cache_summary(),
        "timings": outcome.timings,
        "model": services.scorer.model_id,
        "engine": outcome.engine,
        "rules_version": outcome.rules_version,
    }
    return body


def _hit(page_hit: PageHit, index: str, source_spec: Any) -> dict[str, Any]:
    hit, ranked = page_hit.hit, page_hit.ranked
    return {
        "_index": hit.index or index,
        "_id": hit.id,
        "_score": ranked.final if ranked else hit.score,
        **source_entry(hit.source, source_spec),
        "_rerank": {
            "reranked": ranked is not None,
            "model_score": ranked.candidate.model_score if ranked else None,
            "engine_score": hit.score,
            "band": ranked.band if ranked else "unscored",
            "rules": [{"rule": f.rule, "kind": f.kind, "effect": f.effect} for f in ranked.fired]
            if ranked
            else [],
            "flags": list(page_hit.flags),
        },
    }


def _renamed(exc: InvalidRequest) -> InvalidRequest:
    """search_params names /search fields; say what the drop-in caller wrote instead."""
    if exc.field in _FIELD_NAMES:
        return type(exc)(exc.message, field=_FIELD_NAMES[exc.field], **exc.details)
    return exc


def engine_error(exc: SidecarError, index: str) -> JSONResponse:
    """The engine's error shape, with the sidecar's own error under `error.sidecar`."""
    status = 400 if isinstance(exc, InvalidRequest) else status_for(exc)
    kind = exc.details.get("engine_error") or _ERROR_TYPES.get(type(exc), f"{exc.code}_exception")
    cause: dict[str, Any] = {"type": kind, "reason": exc.message}
    if isinstance(exc, NotFound):
        cause["index"] = index
    error = {"root_cause": [cause], **cause, "sidecar": exc.to_json()}
    return JSONResponse({"error": error, "status": status}, status_code=status)


_ERROR_TYPES: dict[type[SidecarError], str] = {
    InvalidRequest: "illegal_argument_exception",
    BadQuery: "illegal_argument_exception",
    NotFound: "index_not_found_exception",
    Forbidden: "security_exception",
}
