"""`POST|GET /{index}/_search` (and `/_search`): one search body reranked, answered in the
engine's shape.

The body runs on the engine with `size` raised to the rerank window, the window is reranked,
and the answer has the engine's shape (`took`, `timed_out`, `_shards`, `hits.total`,
`hits.max_score`, `hits.hits[]` with `_score` = the final score) plus `_rerank` on every hit
and a top-level `rerank` key. Rerank parameters come in `ext.rerank`
({query, window, rules, instruction, timeout_ms, user_key}, and OpenSearch's rerank processor's
`query_context` {query_text | query_text_path} in place of `query`); without either the text
is read from the first match/multi_match/query_string-like clause (never under `must_not`).
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

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from sidecar.api.deps import ServicesDep
from sidecar.api.engine import url_params
from sidecar.api.engine.forward import engine_json, forward
from sidecar.api.engine.wire import WireError, plain_wire, read_json, wire_for
from sidecar.api.mapping import allowed_index, deadline_for, refuse_scripts, search_params
from sidecar.api.models import SearchRequest, refuse_uncarriable
from sidecar.api.source_filter import source_entry
from sidecar.backends.dsl import CONTINUE_AFTER
from sidecar.errors import InvalidRequest, SidecarError
from sidecar.observability.middleware import remember_search
from sidecar.pipeline import PageHit, SearchOutcome
from sidecar.services import Services

router = APIRouter()

# Clauses whose text is the shopper's query: {field: text | {query: text}} or {query: text}.
_FIELD_CLAUSES = ("match", "match_phrase", "match_phrase_prefix", "match_bool_prefix")
_QUERY_CLAUSES = ("multi_match", "combined_fields", "query_string", "simple_query_string")
_SYNTAX_CLAUSES = ("query_string", "simple_query_string")
_RERANK_KEYS = {
    "query",
    "query_context",
    "window",
    "rules",
    "instruction",
    "timeout_ms",
    "user_key",
}
# OpenSearch's rerank processor reads its text from ext.rerank.query_context: the same body
# sent here reranks with the same text.
_CONTEXT = "ext.rerank.query_context"
_CONTEXT_KEYS = ("query_text", "query_text_path")
_PATH_PART = re.compile(r"([^.\[\]]+)((?:\[\d+\])*)")
# Where search_params names a field of /search, the drop-in caller wrote another.
_FIELD_NAMES = {
    "window": "ext.rerank.window",
    "timeout_ms": "ext.rerank.timeout_ms",
    "instruction": "ext.rerank.instruction",
    "rules": "ext.rerank.rules",
    "query": "ext.rerank.query",
    "raw_query": "query",
}
ONE_SHARD = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}
# Field prefixes, operators and syntax of a query_string: not what the shopper meant.
_EXCLUDED = re.compile(r"(?:^|(?<=\s))[-!]\S+|\bNOT\s+\S+")
_FIELD_PREFIX = re.compile(r"(?<![\w.])[\w.*]+:(?=\S)")
_OPERATORS = re.compile(r"\b(AND|OR|NOT|TO)\b|&&|\|\|")
_QS_SYNTAX = re.compile(r"[+\-!(){}\[\]^\"~*?\\/<>=|&]")


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
            path = None if index is not None or _in_time(body) else _search_path(target)
            return await forward(request, services, raw, path)
        body = url_params.into_body(params, body, request.url.path)
        answer = await search_answer(target, body, services, request)
        return wire.respond(url_params.shape_answer(answer, params))
    except SidecarError as exc:
        return wire.error(exc, target)


def search_body(body: Any) -> dict[str, Any]:
    """The search body as a dict (an empty body is `{}`), checked for what no engine carries."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidRequest("the search body must be a JSON object", field="body")
    try:
        refuse_uncarriable(body)
    except ValueError as exc:
        raise InvalidRequest(f"body: {exc}", field="body") from None
    return body


def engine_paged(body: Mapping[str, Any], params: Mapping[str, str]) -> str | None:
    """Why this search must keep the engine's own paging, or None: a later `search_after`
    page (of a point in time or not), a scroll."""
    if body.get("search_after") is not None:
        return "search_after"
    return "scroll" if "scroll" in params else None


def _in_time(body: Mapping[str, Any]) -> bool:
    return body.get("pit") is not None


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
        raise _renamed(exc) from exc
    outcome = await services.pipeline.search(params, deadline)
    if not item:
        remember_search(request, outcome, params.query.text)  # metrics and the log line
    return render(outcome, index, source_spec, services, in_time=_in_time(body))


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
    if "query_context" in rerank:
        if text is not None:
            raise InvalidRequest(f"give ext.rerank.query or {_CONTEXT}, not both", field=_CONTEXT)
        text = query_context_text(rerank["query_context"], body)
    if text is None:
        text = find_query_text(engine_body.get("query"))
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest(
            "no query text to rerank with: give ext.rerank.query, or a match, multi_match or "
            "query_string clause in the query (or q= in the URL)",
            field="ext.rerank.query",
        )
    raw_query: dict[str, Any] | None = engine_body
    if services.backend.name == "embedded":
        check_embedded(engine_body)
        raw_query = None
    if _in_time(engine_body) and isinstance(offset, int) and isinstance(size, int):
        # the page is its own window: search_after from it then continues the engine's order
        window = min(offset + size, services.settings.limits.max_window)
        rerank = {**rerank, "window": max(1, window)}
    try:
        request_body = SearchRequest.model_validate(
            {
                "query": text,
                "index": index,
                "from": offset,
                "size": size,
                **{k: v for k, v in rerank.items() if k not in ("query", "query_context")},
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


def query_context_text(context: Any, body: Mapping[str, Any]) -> str:
    """The text OpenSearch's rerank processor would read: `query_text`, or the string at
    `query_text_path` in the request body (`query.match.title.query`, `$.` optional, `[n]` for
    a list item), one of them, as OpenSearch requires."""
    if not isinstance(context, dict):
        raise InvalidRequest(f"{_CONTEXT} must be an object", field=_CONTEXT)
    unknown = sorted(set(context) - set(_CONTEXT_KEYS))
    if unknown:
        raise InvalidRequest(
            f"unknown key {unknown[0]!r}; known: {', '.join(_CONTEXT_KEYS)}",
            field=f"{_CONTEXT}.{unknown[0]}",
        )
    if len(context) != 1:
        raise InvalidRequest(f"{_CONTEXT} takes query_text or query_text_path", field=_CONTEXT)
    if "query_text" in context:
        text = context["query_text"]
        if not isinstance(text, str):
            where = f"{_CONTEXT}.query_text"
            raise InvalidRequest(f"{where} must be a string", field=where)
        return text
    where = f"{_CONTEXT}.query_text_path"
    path = context["query_text_path"]
    if not isinstance(path, str) or not path or len(path) > 1000:
        raise InvalidRequest(f"{where} must be a path of 1 to 1000 characters", field=where)
    node: Any = body
    for part in path.removeprefix("$.").split("."):
        found = _PATH_PART.fullmatch(part)
        if found is None:
            raise InvalidRequest(f"{where}: cannot read the path {path!r}", field=where)
        steps: list[str | int] = [found[1], *map(int, re.findall(r"\d+", found[2]))]
        for step in steps:
            in_object = isinstance(step, str) and isinstance(node, Mapping) and step in node
            in_list = isinstance(step, int) and isinstance(node, list) and step < len(node)
            if not (in_object or in_list):
                raise InvalidRequest(f"{where}: {path!r} names nothing in the body", field=where)
            node = node[step]
    if not isinstance(node, str):
        raise InvalidRequest(f"{where}: {path!r} is not text", field=where)
    return node


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
    """The text of the first match/multi_match/query_string-like clause, depth first, outside
    `must_not` (a query_string without its field prefixes and operators)."""
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
            text = value.get("query")
            if isinstance(text, str) and key in _SYNTAX_CLAUSES:
                text = plain_text(text)
            if isinstance(text, str) and text.strip():
                return text
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


def plain_text(query_string: str) -> str:
    """A query_string's words: `title:boots AND brand:"Trail Peak" -socks` -> `boots Trail
    Peak` (excluded terms are not what the shopper wants)."""
    text = _FIELD_PREFIX.sub(" ", _EXCLUDED.sub(" ", query_string))
    text = _OPERATORS.sub(" ", text)
    return " ".join(_QS_SYNTAX.sub(" ", text).split())


def check_embedded(engine_body: Mapping[str, Any]) -> None:
    """The embedded engine runs query text, not DSL: accept only bodies that mean just that."""
    query = engine_body.get("query")
    plain = query is None or (
        isinstance(query, dict)
        and len(query) == 1
        and next(iter(query)) in ("match_all", *_FIELD_CLAUSES, *_QUERY_CLAUSES)
    )
    extra = set(engine_body) - {"query", "_source", "track_total_hits", "timeout"}
    if not plain or extra:
        raise InvalidRequest(
            "the embedded engine runs query text only: send a single match, multi_match or "
            "query_string query (or ext.rerank.query, or q=), or configure "
            "Elasticsearch/OpenSearch",
            field="query",
        )


def sorted_by_field(body: Mapping[str, Any]) -> bool:
    """True when the body's order is not relevance first: a field, or `_score` ascending.
    Keys after a leading `_score` only break its ties (OpenSearch gives a point in time's hits
    `sort` values only with one, e.g. `["_score", "_doc"]`): the model breaks them instead."""
    sort = body.get("sort")
    if sort is None:
        return False
    items = sort if isinstance(sort, list) else [sort]
    return bool(items) and not _by_relevance(items[0])


def _by_relevance(item: Any) -> bool:
    if item == "_score":
        return True
    if not isinstance(item, dict) or list(item) != ["_score"]:
        return False
    order = item["_score"]
    order = order.get("order", "desc") if isinstance(order, dict) else order
    return order == "desc"


async def _engine_order(
    index: str, body: dict[str, Any], services: Services, request: Request
) -> dict[str, Any]:
    """A field sort is the caller's order: the engine's own answer to the body (its `sort`
    values included, so `search_after` can continue it), with `rerank.status: skipped`."""
    engine_body = dict(body)
    rerank = _pop_rerank(engine_body)
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
    path = b"/_search" if _in_time(engine_body) else _search_path(index)
    answer = await engine_json(services, request, path, engine_body, engine)
    for hit in answer.get("hits", {}).get("hits", []):
        if isinstance(hit, dict):
            hit["_rerank"] = None
    answer["rerank"] = {
        "status": "skipped",
        "reason": "the body sorts by a field: engine order kept",
    }
    return answer


def render(
    outcome: SearchOutcome,
    index: str,
    source_spec: Any,
    services: Services,
    *,
    in_time: bool = False,
) -> dict[str, Any]:
    raw = outcome.raw
    hits = [_hit(page_hit, index, source_spec) for page_hit in outcome.hits]
    if in_time and raw.get(CONTINUE_AFTER) is not None:
        for hit in hits:  # any hit's `sort` continues after the page, in the engine's order
            hit["sort"] = raw[CONTINUE_AFTER]
    reranked = [h["_score"] for h in hits if h["_rerank"]["reranked"]]
    scores = reranked or [h["_score"] for h in hits]
    report = outcome.report
    body: dict[str, Any] = {
        **({"pit_id": raw["pit_id"]} if "pit_id" in raw else {}),
        "took": round(outcome.timings.get("total_ms", 0.0)),
        "timed_out": bool(raw.get("timed_out", False)),
        "_shards": raw.get("_shards", ONE_SHARD),
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
    source = hit.source
    if source_spec is True and type(source) is dict:  # all of it, written out as it is
        kept: dict[str, Any] = {"_source": source}
    else:
        kept = source_entry(source, source_spec)
    return {
        "_index": hit.index or index,
        "_id": hit.id,
        "_score": ranked.final if ranked else hit.score,
        **kept,
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


def _search_path(index: str) -> bytes:
    return f"/{quote(index, safe=',*')}/_search".encode()
