"""The query DSL that Elasticsearch and OpenSearch share: request bodies, hits, engine errors.

Pure functions (no I/O), so both backends build the same first-stage query, read hits the same
way and turn an engine's refusal into the same sidecar error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sidecar.backends.base import Filter, Hit, RangeFilter, SearchResult
from sidecar.backends.cjk import CJK_RUN
from sidecar.errors import (
    BadQuery,
    EngineUnavailable,
    NotFound,
    Overloaded,
    SidecarError,
)

# Keys of the engine's answer kept in SearchResult.raw for callers that mirror the engine's shape.
RAW_KEYS = ("took", "timed_out", "_shards", "aggregations", "suggest", "pit_id")
# SearchResult.raw's key for the `sort` values of the engine's last hit: where a point-in-time
# search continues (`search_after`) once the sidecar has reranked the page.
CONTINUE_AFTER = "continue_after"
# The sub-field of the CJK twin of a searched field (es_integration/templates/products-cjk.json).
CJK_SUBFIELD = "cjk"
_WILDCARD = re.compile(r"[*?\[]")  # where a `_source` pattern stops being literal text


def build_body(
    query: str | None,
    filters: Sequence[Filter],
    window: int,
    offset: int,
    search_fields: Mapping[str, float],
    source_fields: Sequence[str],
    raw_query: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The first-stage search body: `multi_match` over the boosted fields with the filters in a
    `bool` filter, or the caller's raw body (filters still apply), sized to the rerank window."""
    if raw_query is not None:
        body = dict(raw_query)
        main = body.get("query", {"match_all": {}})
        body["_source"] = _merge_source(body.get("_source"), source_fields)
    else:
        body = {"_source": list(source_fields)}
        text = (query or "").strip()
        main = text_query(text, search_fields) if text else {"match_all": {}}
    clauses = [filter_clause(flt) for flt in filters]
    body["query"] = {"bool": {"must": [main], "filter": clauses}} if clauses else main
    body["size"] = window
    body["from"] = offset
    return body


def knn_body_elasticsearch(
    vector: list[float],
    filters: Sequence[Filter],
    k: int,
    field: str,
    candidates: int,
    source_fields: Sequence[str],
) -> dict[str, Any]:
    """Elasticsearch's vector leg: the top-level `knn` search (HNSW over a `dense_vector`),
    the filters inside it, so the k nearest are the k nearest that pass them."""
    knn: dict[str, Any] = {
        "field": field,
        "query_vector": vector,
        "k": k,
        "num_candidates": min(max(candidates, k), 10_000),
    }
    if filters:
        knn["filter"] = [filter_clause(flt) for flt in filters]
    return {"knn": knn, "size": k, "_source": list(source_fields)}


def knn_body_opensearch(
    vector: list[float],
    filters: Sequence[Filter],
    k: int,
    field: str,
    source_fields: Sequence[str],
) -> dict[str, Any]:
    """OpenSearch's vector leg: the k-NN plugin's `knn` query over a `knn_vector`, the filters
    inside it (efficient filtering of the Lucene and Faiss engines)."""
    inner: dict[str, Any] = {"vector": vector, "k": k}
    if filters:
        inner["filter"] = {"bool": {"filter": [filter_clause(flt) for flt in filters]}}
    return {"size": k, "_source": list(source_fields), "query": {"knn": {field: inner}}}


def vector_field_problem(mapping: Any, field: str, dims: int, kind: str) -> str | None:
    """Why the `_mapping/field/<field>` answer does not hold `field` as `kind` vectors of
    `dims` dimensions (None: it does); every index of the answer must."""
    if not isinstance(mapping, Mapping) or not mapping:
        return "no index answered for its mapping"
    leaf = field.rsplit(".", 1)[-1]
    for name, entry in mapping.items():
        fields = entry.get("mappings", {}) if isinstance(entry, Mapping) else {}
        found = fields.get(field, {}).get("mapping", {}).get(leaf) if fields else None
        if not isinstance(found, Mapping):
            return f"index {name!r} has no vector field {field!r} (index it with --vectors)"
        if found.get("type") != kind:
            return f"{field!r} of {name!r} is {found.get('type')!r}, not {kind!r}"
        have = found.get("dims", found.get("dimension"))
        if have is not None and int(have) != dims:
            return f"{field!r} of {name!r} has {have} dimensions, not {dims}"
    return None


def search_path_index(index: str, body: Mapping[str, Any]) -> str | None:
    """The index to name in the search's path: none for a point-in-time search, whose id names
    its indices (Elasticsearch refuses a path index beside a `pit`)."""
    return None if body.get("pit") is not None else index


def text_query(text: str, search_fields: Mapping[str, float]) -> dict[str, Any]:
    """`multi_match` over the boosted fields; for text with Chinese, Japanese or Korean in it,
    OR a second one over the fields' `.cjk` sub-fields (character pairs where the index has
    them: products-cjk.json), so a product scores for the characters it shares with the query
    (the standard analyzer's single characters) and more for the pairs. A sub-field the index
    lacks (products.json, on an engine without the `cjk` analyzer) matches nothing, and the
    query is the standard analyzer's alone."""
    main = _multi_match(text, search_fields)
    if not CJK_RUN.search(text):
        return main
    pairs = _multi_match(text, {cjk_field(name): boost for name, boost in search_fields.items()})
    return {"bool": {"should": [main, pairs]}}


def cjk_field(name: str) -> str:
    """The CJK sub-field of a searched field: `title` -> `title.cjk`, `brand.text` ->
    `brand.cjk` (a keyword's full-text sub-fields are its siblings)."""
    root = name.removesuffix(".text")
    return f"{root}.{CJK_SUBFIELD}"


def _multi_match(text: str, fields: Mapping[str, float]) -> dict[str, Any]:
    return {
        "multi_match": {
            "query": text,
            "fields": [f"{name}^{boost:g}" for name, boost in fields.items()],
            "type": "best_fields",
        }
    }


def filter_clause(flt: Filter) -> dict[str, Any]:
    if isinstance(flt, RangeFilter):
        bounds = {
            op: value
            for op, value in (("gte", flt.gte), ("gt", flt.gt), ("lte", flt.lte), ("lt", flt.lt))
            if value is not None
        }
        return {"range": {flt.field: bounds}}
    if len(flt.values) == 1:
        return {"term": {flt.field: flt.values[0]}}
    return {"terms": {flt.field: list(flt.values)}}


def _merge_source(requested: Any, needed: Sequence[str]) -> Any:
    """The caller's `_source` plus the fields the reranker reads (a caller's `false` still
    fetches those: the model needs them; the drop-in endpoint trims the answer again). The
    caller's excludes are sent on where they cannot touch a field the reranker reads, so the
    engine does not send what nobody will see; the others are applied only to the answer."""
    if requested is True:
        return True
    if isinstance(requested, str):
        requested = [requested]
    if isinstance(requested, list):
        return list(dict.fromkeys([*requested, *needed]))
    if isinstance(requested, dict):
        includes = requested.get("includes", requested.get("include"))
        excludes = _harmless_excludes(requested.get("excludes", requested.get("exclude")), needed)
        if not includes:  # excludes only: all of it but what the reranker cannot need
            return {"excludes": excludes} if excludes else True
        if isinstance(includes, str):
            includes = [includes]
        merged: dict[str, Any] = {"includes": list(dict.fromkeys([*includes, *needed]))}
        if excludes:
            merged["excludes"] = excludes
        return merged
    return list(needed)


def _harmless_excludes(excludes: Any, needed: Sequence[str]) -> list[str]:
    """The exclude patterns that match no field the reranker reads, no object holding one and
    nothing inside one. A pattern matches only paths that begin with its text before its first
    wildcard, so it is harmless when that text and every needed field are not one a prefix of
    the other ("desc*" beside "title"; not "t*", not "title.raw", not "brand" beside
    "brand.text")."""
    if isinstance(excludes, str):
        excludes = [excludes]
    if not isinstance(excludes, list):
        return []
    kept = []
    for pattern in excludes:
        if not isinstance(pattern, str) or not pattern:
            continue
        literal = _WILDCARD.split(pattern, maxsplit=1)[0]
        if all(not (n.startswith(literal) or literal.startswith(n)) for n in needed):
            kept.append(pattern)
    return kept


def parse_response(response: Mapping[str, Any]) -> SearchResult:
    hits_part = response.get("hits") or {}
    hits = [
        Hit(
            id=str(item.get("_id", "")),
            score=float(item["_score"]) if item.get("_score") is not None else 0.0,
            source=item.get("_source") or {},
            index=str(item.get("_index", "")),
        )
        for item in hits_part.get("hits") or []
    ]
    total_part = hits_part.get("total")
    if isinstance(total_part, Mapping):
        total, relation = int(total_part.get("value", 0)), str(total_part.get("relation", "eq"))
    else:  # track_total_hits: false gives no total; an old engine gives a bare number
        total, relation = int(total_part or len(hits)), "eq" if total_part is not None else "gte"
    raw = {key: response[key] for key in RAW_KEYS if key in response}
    raw["total_relation"] = relation
    raw["max_score"] = hits_part.get("max_score")
    last = (hits_part.get("hits") or [None])[-1]
    if isinstance(last, Mapping) and last.get("sort") is not None:
        raw[CONTINUE_AFTER] = last["sort"]
    return SearchResult(
        hits=hits, total=total, took_ms=float(response.get("took", 0) or 0), raw=raw
    )


def engine_reason(body: Any) -> tuple[str, str]:
    """(type, reason) of an engine error body, the most specific one: `root_cause` says what
    failed ("failed to create query: For input string ..."), not "all shards failed"."""
    if not isinstance(body, Mapping):
        return "", str(body or "")
    error = body.get("error")
    if isinstance(error, str):
        return "", error
    if not isinstance(error, Mapping):
        return "", ""
    causes = error.get("root_cause") or []
    best: Mapping[str, Any] = causes[0] if causes and isinstance(causes[0], Mapping) else error
    caused_by = best.get("caused_by")
    reason = str(best.get("reason") or error.get("reason") or "")
    if isinstance(caused_by, Mapping) and caused_by.get("reason"):
        reason = f"{reason}: {caused_by['reason']}" if reason else str(caused_by["reason"])
    return str(best.get("type") or error.get("type") or ""), reason


def error_for_status(engine: str, index: str, status: int, body: Any) -> SidecarError:
    """An engine's HTTP error -> the sidecar's error, keeping the engine's type and reason."""
    kind, reason = engine_reason(body)
    what = ": ".join(part for part in (kind, reason) if part) or "no reason given"
    details: dict[str, Any] = {
        "engine": engine,
        "engine_status": status,
        "engine_error": kind or None,
    }
    if status == 404:
        return NotFound(
            f"{engine} has no index {index!r}" + (f" ({reason})" if reason else ""),
            field="index",
            **details,
        )
    if status == 429:
        return Overloaded(f"{engine} is overloaded: {reason or 'too many requests'}", **details)
    if status in (401, 403):
        return EngineUnavailable(
            f"{engine} refused the sidecar's credentials ({status}): {reason}", **details
        )
    if 400 <= status < 500:
        return BadQuery(f"{engine} refused the query: {what}", **details)
    return EngineUnavailable(f"{engine} failed ({status}): {what}", **details)
