"""The URL parameters of a reranked search, read the way the engines read them.

A parameter that the search body can say moves into the body (`q` becomes a `query_string`
query, `size`, `from`, `sort`, `_source`... override the body, as on the engines); one that
shapes the answer is applied to the answer (`filter_path`, `rest_total_hits_as_int`); one that
only tunes how the engine runs (`preference`, `request_cache`, `ignore_unavailable`...) is
accepted and has nothing to change. A parameter the sidecar cannot honour while reranking
(`routing`, `search_type`, `suggest_*`; `typed_keys` on a body with aggregations or a suggester)
is a 400 that names it, and an unknown one is the engines' own 400 ("contains unrecognized
parameter"). `typed_keys` only renames aggregations and suggesters in the answer, so on a body
with neither it changes nothing and is accepted (the Java client sends it on every search).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from sidecar.errors import InvalidRequest

_QUERY_STRING = {
    "df": "default_field",
    "default_operator": "default_operator",
    "analyzer": "analyzer",
    "analyze_wildcard": "analyze_wildcard",
    "lenient": "lenient",
}
_INTS = ("from", "size", "terminate_after")
_BOOLS = ("explain", "version", "seq_no_primary_term", "track_scores")
_LISTS = ("stored_fields", "docvalue_fields")
_TYPED = ("aggs", "aggregations", "suggest")  # what `typed_keys` renames in the answer
ANSWER = frozenset({"filter_path", "rest_total_hits_as_int", "pretty", "human", "error_trace"})
# How the engine runs the search; nothing for the sidecar to change.
RUN = frozenset(
    {
        "allow_no_indices",
        "allow_partial_search_results",
        "batched_reduce_size",
        "ccs_minimize_roundtrips",
        "expand_wildcards",
        "ignore_throttled",
        "ignore_unavailable",
        "include_named_queries_score",
        "max_concurrent_shard_requests",
        "pre_filter_shard_size",
        "preference",
        "request_cache",
    }
)
UNSUPPORTED = frozenset(
    {
        "routing",
        "search_type",
        "typed_keys",
        "stats",
        "suggest_field",
        "suggest_mode",
        "suggest_size",
        "suggest_text",
        "force_synthetic_source",
    }
)
SEARCH = frozenset(
    {
        "q",
        *_QUERY_STRING,
        *_INTS,
        *_BOOLS,
        *_LISTS,
        "_source",
        "_source_includes",
        "_source_excludes",
        "track_total_hits",
        "timeout",
        "sort",
        "scroll",  # a scroll search is forwarded to the engine, not reranked
    }
)
MSEARCH = frozenset({"max_concurrent_searches", *ANSWER, *RUN, "search_type"})


def check_known(params: Mapping[str, str], known: frozenset[str], path: str) -> None:
    """The engines' 400 for a parameter they do not know; the sidecar's for one it cannot
    honour on a reranked search."""
    for name in params:
        if name in UNSUPPORTED:
            raise InvalidRequest(
                f"the sidecar reranks searches without [{name}]: leave it out, or send this "
                "search to the engine itself",
                field=name,
            )
        if name not in known and name not in ANSWER and name not in RUN:
            raise InvalidRequest(
                f"request [{path}] contains unrecognized parameter: [{name}]", field=name
            )


def without_idle_typed_keys(params: Mapping[str, str], bodies: list[Any]) -> Mapping[str, str]:
    """`params` without `typed_keys` where it would rename nothing: no body has aggregations or
    a suggester. Otherwise `params` as they are (and check_known refuses it, naming it)."""
    if "typed_keys" not in params:
        return params
    if any(isinstance(b, dict) and any(k in b for k in _TYPED) for b in bodies):
        return params
    flag(params, "typed_keys")  # a bad value is still the engines' 400
    return {k: v for k, v in params.items() if k != "typed_keys"}


def into_body(params: Mapping[str, str], body: dict[str, Any], path: str) -> dict[str, Any]:
    """The search body with the URL's search parameters applied (they win over the body)."""
    params = without_idle_typed_keys(params, [body])
    check_known(params, SEARCH, path)
    out = dict(body)
    if "q" in params:
        query: dict[str, Any] = {"query": params["q"]}
        for name, key in _QUERY_STRING.items():
            if name in params:
                query[key] = (
                    flag(params, name) if name in ("analyze_wildcard", "lenient") else params[name]
                )
        out["query"] = {"query_string": query}
    for name in _INTS:
        if name in params:
            out[name] = integer(params, name)
    for name in _BOOLS:
        if name in params:
            out[name] = flag(params, name)
    for name in _LISTS:
        if name in params:
            out[name] = _split(params[name])
    if "timeout" in params:
        out["timeout"] = params["timeout"]
    if "track_total_hits" in params:
        value = params["track_total_hits"]
        out["track_total_hits"] = (
            integer(params, "track_total_hits")
            if value.lstrip("-").isdigit()
            else flag(params, "track_total_hits")
        )
    if "sort" in params:
        out["sort"] = [_sort_item(item) for item in _split(params["sort"])]
    source = source_spec(params)
    if source is not None:
        out["_source"] = source
    return out


def integer(params: Mapping[str, str], name: str) -> int:
    value = params[name]
    if not value.isdigit() or len(value) > 10:
        raise InvalidRequest(
            f"Failed to parse int parameter [{name}] with value [{value}]", field=name
        )
    return int(value)


def flag(params: Mapping[str, str], name: str) -> bool:
    value = params[name]
    if value in ("", "true"):
        return True
    if value == "false":
        return False
    raise InvalidRequest(
        f"Failed to parse value [{value}] as only [true] or [false] are allowed.", field=name
    )


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _sort_item(item: str) -> Any:
    name, _, order = item.rpartition(":") if ":" in item else (item, "", "")
    if not order:
        return item
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"sort: unknown order [{order}] for [{name}]", field="sort")
    return {name: order}


def source_spec(params: Mapping[str, str]) -> Any:
    """The `_source` the URL asks for (`_source`, `_source_includes`, `_source_excludes`)."""
    includes = _split(params.get("_source_includes", ""))
    excludes = _split(params.get("_source_excludes", ""))
    if "_source" in params:
        value = params["_source"]
        if value in ("true", "false"):
            if not includes and not excludes:
                return value == "true"
        else:
            includes = _split(value) + includes
    if not includes and not excludes:
        return None
    return {"includes": includes, "excludes": excludes}


def shape_answer(answer: dict[str, Any], params: Mapping[str, str]) -> Any:
    """The answer as `rest_total_hits_as_int` and `filter_path` ask for it."""
    if "rest_total_hits_as_int" in params and flag(params, "rest_total_hits_as_int"):
        _totals_as_int(answer)
    if params.get("filter_path"):
        return filter_path(answer, params["filter_path"])
    return answer


def _totals_as_int(node: Any) -> None:
    hits = node.get("hits") if isinstance(node, dict) else None
    if isinstance(hits, dict) and isinstance(hits.get("total"), dict):
        hits["total"] = hits["total"].get("value", 0)
    for item in node.get("responses", []) if isinstance(node, dict) else []:
        _totals_as_int(item)


def filter_path(node: Any, spec: str) -> Any:
    """Elasticsearch's `filter_path`: comma-separated dotted paths, `*` within a name, `**`
    across levels, a leading `-` excludes; arrays are looked through."""
    paths = _split(spec)
    includes = [p.split(".") for p in paths if not p.startswith("-")]
    excludes = [p[1:].split(".") for p in paths if p.startswith("-")]
    out = node
    if includes:
        kept = _keep(node, includes)
        out = kept if kept is not _NOTHING else {}
    if excludes:
        out = _drop(out, excludes)
    return out


_NOTHING = object()


def _keep(node: Any, patterns: list[list[str]]) -> Any:
    if isinstance(node, list):
        items = [_keep(item, patterns) for item in node]
        kept = [item for item in items if item is not _NOTHING]
        return kept if kept else _NOTHING
    if not isinstance(node, dict):
        return _NOTHING
    out: dict[str, Any] = {}
    for key, value in node.items():
        rest = _advance(key, patterns)
        if any(not r for r in rest):
            out[key] = value
        elif rest:
            kept = _keep(value, rest)
            if kept is not _NOTHING:
                out[key] = kept
    return out if out else _NOTHING


def _drop(node: Any, patterns: list[list[str]]) -> Any:
    if isinstance(node, list):
        return [_drop(item, patterns) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        rest = _advance(key, patterns)
        if any(not r for r in rest):
            continue
        out[key] = _drop(value, rest) if rest else value
    return out


def _advance(key: str, patterns: list[list[str]]) -> list[list[str]]:
    """The patterns left for a key's value once `key` is matched ([] in it: matched whole)."""
    rest: list[list[str]] = []
    for pattern in patterns:
        head = pattern[0]
        if head == "**":
            rest.append(pattern)  # ** takes this level too
            if len(pattern) > 1 and fnmatch.fnmatchcase(key, pattern[1]):
                rest.append(pattern[2:])
            elif len(pattern) == 1:
                rest.append([])
        elif fnmatch.fnmatchcase(key, head):
            rest.append(pattern[1:])
    return rest
