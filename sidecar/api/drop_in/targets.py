"""What an engine request touches, read from its method and path alone (pure functions).

`/{target}/{api}...`: a first segment not starting with `_` (or `_all`) is the index expression
(a comma list, wildcards allowed); the `_`-segment after it names the API (`_doc`, `_count`,
`_search/template`...). A request is a read when it is a GET or HEAD, a POST to an API that only
reads (search, count, get many, explain, open a point in time...), or a DELETE that closes a
scroll or a point in time; anything else (`_bulk`, `_doc` PUT/POST/DELETE, `_update`,
`_delete_by_query`, index creation and deletion, settings...) is a write.

Cluster-level paths (`/_cat/...`, `/_mapping`, `/_sql`...) may read any index, so they count as
naming `_all`, which only an allowlist of `*` admits; the few that name no index's data (`/`,
`/_cluster/health`, scroll and point-in-time cursors) name none. `_mget`, `_msearch/template`
and `_mtermvectors` may name indices in their bodies: `body_indices` reads them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from sidecar.errors import InvalidRequest

# Two-segment API names; every other API is named by its first `_` segment.
_TWO_PART = frozenset(
    {
        "_search/template",
        "_msearch/template",
        "_search/scroll",
        "_search/point_in_time",
        "_validate/query",
        "_render/template",
        "_cluster/health",
    }
)
READ_POSTS = frozenset(
    {
        "_search",
        "_msearch",
        "_count",
        "_mget",
        "_search/template",
        "_msearch/template",
        "_render/template",
        "_validate/query",
        "_explain",
        "_field_caps",
        "_termvectors",
        "_mtermvectors",
        "_search/scroll",
        "_pit",
        "_search/point_in_time",
        "_rank_eval",
        "_terms_enum",
        "_knn_search",
        "_search_shards",
        "_analyze",
    }
)
CLOSE_CURSORS = frozenset({"_search/scroll", "_pit", "_search/point_in_time"})
# Cluster-level APIs that read no index's documents.
NO_INDEX = frozenset({"", "_cluster/health", "_search/scroll", "_pit", "_search/point_in_time"})
# APIs whose bodies may name indices of their own.
BODY_TARGETS = frozenset({"_mget", "_msearch", "_msearch/template", "_mtermvectors"})
ALL = "_all"


@dataclass(frozen=True)
class Target:
    """One engine request: the index expression it names ("" for none), its API, the rest."""

    index: str
    api: str
    rest: tuple[str, ...]
    write: bool


def target_of(method: str, raw_path: str) -> Target:
    """The index, API and write-ness of `method raw_path` (the path as sent, %-escapes in it)."""
    segments = [unquote(s) for s in raw_path.split("/")[1:]]
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash
    for segment in segments:
        if segment in (".", "..") or "/" in segment:
            raise InvalidRequest(f"invalid path segment [{segment}]", field="path")
    index = ""
    if segments and (not segments[0].startswith("_") or segments[0] == ALL):
        index, segments = segments[0], segments[1:]
    api = "/".join(segments[:2]) if "/".join(segments[:2]) in _TWO_PART else ""
    if not api:
        api = segments[0] if segments and segments[0].startswith("_") else ""
    rest = tuple(segments[len(api.split("/")) if api else 0 :])
    if not index and api == "_cluster/health" and rest:
        index, rest = rest[0], rest[1:]  # /_cluster/health/{index}
    elif not index and api not in NO_INDEX and api not in BODY_TARGETS:
        index = ALL  # reads whatever the cluster holds
    return Target(index, api, rest, _is_write(method.upper(), api, index, rest))


def _is_write(method: str, api: str, index: str, rest: tuple[str, ...]) -> bool:
    if method in ("GET", "HEAD", "OPTIONS"):
        return False
    if method == "POST":
        return api not in READ_POSTS
    if method == "DELETE":
        return api not in CLOSE_CURSORS
    return True  # PUT, PATCH and anything else


def body_indices(api: str, raw: bytes, default: str) -> list[str]:
    """The indices a multi-target body names (`default` for an item that names none); an
    unreadable body is InvalidRequest, since it cannot be checked."""
    if not raw.strip():
        return [default]
    try:
        if api in ("_msearch", "_msearch/template"):
            lines = [line for line in raw.decode("utf-8").split("\n") if line.strip()]
            headers = [json.loads(line) for line in lines[0::2]]
            return [_index_of(h, "index", default) for h in headers]
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"the {api} body cannot be read: {exc}", field="body") from exc
    if not isinstance(body, dict):
        raise InvalidRequest(f"the {api} body must be a JSON object", field="body")
    docs = body.get("docs")
    if docs is None:
        return [default]
    if not isinstance(docs, list):
        raise InvalidRequest("docs must be an array", field="docs")
    return [_index_of(doc, "_index", default) for doc in docs] or [default]


def _index_of(item: Any, key: str, default: str) -> str:
    if not isinstance(item, dict):
        raise InvalidRequest("each item must be a JSON object", field="body")
    value = item.get(key, default)
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    if not isinstance(value, str):
        raise InvalidRequest(f"{key} must be a string", field=key)
    return value or default
