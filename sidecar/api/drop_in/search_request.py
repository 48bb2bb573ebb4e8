"""A drop-in search body read as the `/search` request it means, with the caller's `_source`
spec (`to_search_request`).

Rerank parameters come in `ext.rerank` ({query, window, rules, instruction, timeout_ms,
user_key, retrieval}, and OpenSearch's rerank processor's `query_context` {query_text |
query_text_path} in place of `query`); `retrieval: hybrid` adds the vector leg beside the
caller's query, which otherwise runs alone whatever hybrid.enabled says; without either
the text is read from the first match/multi_match/query_string-like clause of the engine's
query DSL (never under `must_not`; a query_string without its field prefixes and operators).
Also read here: whether the body sorts by relevance, whether it is a point in time's, and what
the embedded engine can run.
Errors name the field as the drop-in caller wrote it (`ext.rerank.window`, not `window`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from sidecar.api.models import SearchRequest, refuse_uncarriable
from sidecar.errors import InvalidRequest
from sidecar.services import Services

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
    "retrieval",
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
    "retrieval": "ext.rerank.retrieval",
    "raw_query": "query",
}
# Field prefixes, operators and syntax of a query_string: not what the shopper meant.
_EXCLUDED = re.compile(r"(?:^|(?<=\s))[-!]\S+|\bNOT\s+\S+")
_FIELD_PREFIX = re.compile(r"(?<![\w.])[\w.*]+:(?=\S)")
_OPERATORS = re.compile(r"\b(AND|OR|NOT|TO)\b|&&|\|\|")
_QS_SYNTAX = re.compile(r"[+\-!(){}\[\]^\"~*?\\/<>=|&]")


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


def in_time(body: Mapping[str, Any]) -> bool:
    """A point in time's search (its first page is reranked within itself)."""
    return body.get("pit") is not None


def to_search_request(
    index: str, body: Mapping[str, Any], services: Services
) -> tuple[SearchRequest, Any]:
    """(the /search request this body means, the caller's `_source` spec)."""
    engine_body = dict(body)
    rerank = pop_rerank(engine_body)
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
    if in_time(engine_body) and isinstance(offset, int) and isinstance(size, int):
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
                # the caller's own query alone, unless ext.rerank.retrieval asks for hybrid
                "retrieval": "lexical",
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


def pop_rerank(engine_body: dict[str, Any]) -> dict[str, Any]:
    """`ext.rerank`, taken out of the body (other `ext` keys stay: they are the engine's)."""
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


def drop_in_field(exc: InvalidRequest) -> InvalidRequest:
    """search_params names /search fields; say what the drop-in caller wrote instead."""
    if exc.field in _FIELD_NAMES:
        return type(exc)(exc.message, field=_FIELD_NAMES[exc.field], **exc.details)
    return exc
