"""The read-only Elasticsearch subset the embedded engine answers, so that an official client
can be tried with no engine running: `GET /` (cluster info), `GET /_cluster/health`,
`HEAD|GET /{index}`, `_count`, `GET|HEAD /{index}/_doc/{id}`, `/{index}/_source/{id}`, `_mget`
and `_mapping` (`_search` and `_msearch` are the reranking routes). Anything else is a 404
that lists what there is; the answers come from `EmbeddedBackend`.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from sidecar.api.drop_in import url_params
from sidecar.api.drop_in.search_request import check_embedded, find_query_text, search_body
from sidecar.api.drop_in.targets import ALL, Target
from sidecar.api.drop_in.wire import Wire, error_body, read_json
from sidecar.api.mapping import allowed_index
from sidecar.api.source_filter import source_entry
from sidecar.backends.embedded import EmbeddedBackend
from sidecar.errors import InvalidRequest, NotFound, SidecarError
from sidecar.services import Services

SUBSET = (
    "GET /, GET /_cluster/health, HEAD|GET /{index}, GET|POST /{index}/_count, "
    "GET|HEAD /{index}/_doc/{id}, GET /{index}/_source/{id}, GET|POST /{index}/_mget, "
    "GET /{index}/_mapping, GET|POST /{index}/_search, GET|POST /{index}/_msearch"
)


async def answer(
    request: Request, target: Target, raw: bytes, wire: Wire, services: Services
) -> Response:
    """The embedded engine's answer to one request of the subset (404 outside it)."""
    backend = services.backend
    assert isinstance(backend, EmbeddedBackend)
    method, api, rest = request.method, target.api, target.rest
    params = request.query_params
    if target.write:
        raise InvalidRequest("the embedded engine is read-only", field="method")
    if not in_subset(method, target):
        return wire.respond(
            {
                "error": "not_found",
                "message": f"the embedded engine has no handler for [{method} "
                f"{request.url.path}]; it answers {SUBSET} (configure Elasticsearch or "
                "OpenSearch for the rest)",
                "status": 404,
            },
            404,
        )
    if not target.index and not api:
        return _head_or(method, wire, backend.info(wire.compat or 8))
    if api == "_cluster/health":
        return wire.respond(backend.health())
    names = _names(target.index, backend)
    if not api and method == "HEAD":
        status = 200 if backend.exists(",".join(names)) else 404
        return Response(status_code=status, headers=dict(wire.headers))
    if not api:
        return wire.respond(
            {
                name: {
                    "aliases": {},
                    **backend.mapping(name)[name],
                    "settings": {"index": {"number_of_shards": "1", "number_of_replicas": "0"}},
                }
                for name in names
            }
        )
    if api == "_count":
        return wire.respond(_count(names, params, raw, services, backend))
    if api in ("_doc", "_source"):
        doc = backend.get(_one(names), rest[0])
        status = 200 if doc["found"] else 404
        if method == "HEAD":
            return Response(status_code=status, headers=dict(wire.headers))
        if api == "_source":
            if not doc["found"]:
                raise NotFound(
                    f"document [{rest[0]}] not found",
                    field="id",
                    engine_error="resource_not_found_exception",
                )
            return wire.respond(_trimmed(doc, params).get("_source", {}))
        return wire.respond(_trimmed(doc, params), status)
    if api == "_mget":
        return wire.respond(_mget(target.index, raw, params, services, backend))
    out: dict[str, Any] = {}  # _mapping
    for name in names:
        out.update(backend.mapping(name))
    return wire.respond(out)


def in_subset(method: str, target: Target) -> bool:
    api, rest, index = target.api, target.rest, target.index
    reads = method in ("GET", "HEAD")
    if not api:
        return reads and not rest
    if api == "_cluster/health":
        return method == "GET" and not rest
    if api == "_count" or api == "_mget":
        return method in ("GET", "POST") and not rest
    if api in ("_doc", "_source"):
        return reads and len(rest) == 1 and bool(index) and index != ALL
    return api == "_mapping" and method == "GET" and not rest


def _head_or(method: str, wire: Wire, body: dict[str, Any]) -> Response:
    if method == "HEAD":
        return Response(status_code=200, headers=dict(wire.headers))
    return wire.respond(body)


def _names(index: str, backend: EmbeddedBackend) -> list[str]:
    known = sorted(backend.indexes())
    if index in ("", ALL, "*"):
        return known
    names: list[str] = []
    for part in index.split(","):
        if any(c in part for c in "*?"):
            names += [name for name in known if fnmatch.fnmatchcase(name, part)]
        elif part not in known:
            raise NotFound(
                f"no such index [{part}]", field="index", engine_error="index_not_found_exception"
            )
        else:
            names.append(part)
    return list(dict.fromkeys(names))


def _one(names: list[str]) -> str:
    if len(names) != 1:
        raise InvalidRequest("a document is read from exactly one index", field="index")
    return names[0]


def _count(
    names: list[str], params: Any, raw: bytes, services: Services, backend: EmbeddedBackend
) -> dict[str, Any]:
    body = search_body(read_json(raw))
    if "q" in params:
        body = url_params.into_body({"q": params["q"]}, body, "/_count")
    unknown = set(body) - {"query"}
    if unknown:
        raise InvalidRequest(f"request does not support [{sorted(unknown)[0]}]", field="body")
    check_embedded(body)
    text = find_query_text(body.get("query"))
    query = services.normalizer.query(text).text if text else None
    total = sum(backend.count(name, query)["count"] for name in names)
    shards = len(names)
    return {
        "count": total,
        "_shards": {"total": shards, "successful": shards, "skipped": 0, "failed": 0},
    }


def _mget(
    path_index: str, raw: bytes, params: Any, services: Services, backend: EmbeddedBackend
) -> dict[str, Any]:
    body = read_json(raw)
    if not isinstance(body, dict):
        raise InvalidRequest("the _mget body must be a JSON object", field="body")
    if "ids" in body:
        ids = body["ids"]
        if not isinstance(ids, list) or not path_index:
            raise InvalidRequest("ids must be an array, with an index in the path", field="ids")
        docs: Any = [{"_id": doc_id} for doc_id in ids]
    else:
        docs = body.get("docs")
        if not isinstance(docs, list):
            raise InvalidRequest("the _mget body needs docs or ids", field="docs")
    out = []
    for i, item in enumerate(docs):
        if not isinstance(item, dict) or not isinstance(item.get("_id"), str | int):
            raise InvalidRequest(f"docs[{i}] needs an _id", field=f"docs[{i}]._id")
        index = item.get("_index") or path_index
        doc_id = str(item["_id"])
        if not isinstance(index, str) or not index:
            raise InvalidRequest(f"docs[{i}]: index is missing", field=f"docs[{i}]._index")
        try:
            allowed_index(index, services)
            doc = backend.get(index, doc_id)
        except SidecarError as exc:
            out.append(
                {"_index": index, "_id": doc_id, "error": error_body(exc, index)[0]["error"]}
            )
            continue
        spec = item.get("_source")
        out.append(_trimmed(doc, params) if spec is None else _with_source(doc, spec))
    return {"docs": out}


def _trimmed(doc: dict[str, Any], params: Any) -> dict[str, Any]:
    spec = url_params.source_spec(params)
    return doc if spec is None else _with_source(doc, spec)


def _with_source(doc: dict[str, Any], spec: Any) -> dict[str, Any]:
    if not doc.get("found"):
        return doc
    rest = {k: v for k, v in doc.items() if k != "_source"}
    return {**rest, **source_entry(doc.get("_source", {}), spec)}
