"""Request bodies -> pipeline inputs, in one place: every route (and the drop-in endpoint) reads
its request through these functions and shapes its own answer. Limits are checked here, with the
field that broke them; the pipeline raises what only it can know (model state, modalities).
Every route with a budget makes its one Deadline here (`deadline_for`), from the request's
arrival."""

from __future__ import annotations

import time

from fastapi import Request

from sidecar.api.models import (
    Filters,
    QueryObject,
    RerankDocument,
    RerankRequest,
    SearchRequest,
    TEIRerankRequest,
    V1RerankRequest,
    V2RerankRequest,
)
from sidecar.backends.base import Filter, RangeFilter, TermFilter
from sidecar.deadline import Deadline
from sidecar.documents import Document, make_document
from sidecar.errors import Forbidden, InvalidRequest
from sidecar.observability.middleware import arrived
from sidecar.pipeline import SearchParams
from sidecar.query import Normalizer, Query
from sidecar.services import Services


def parse_query(query: str | QueryObject, normalizer: Normalizer) -> Query:
    if isinstance(query, str):
        return normalizer.query(query)
    return normalizer.query(query.text, query.image_url, query.image_base64)


def to_filters(filters: Filters) -> list[Filter]:
    out: list[Filter] = []
    for name, value in filters.term.items():
        values = tuple(value) if isinstance(value, list) else (value,)
        out.append(TermFilter(field=name, values=values))
    for name, bounds in filters.range.items():
        out.append(
            RangeFilter(field=name, gte=bounds.gte, gt=bounds.gt, lte=bounds.lte, lt=bounds.lt)
        )
    return out


def deadline_for(
    request: Request, timeout_ms: int | None, services: Services, default_ms: int | None = None
) -> Deadline:
    """The request's one Deadline: its own `timeout_ms` up to limits.max_timeout_ms
    (InvalidRequest naming `timeout_ms` above it), or the default (`default_ms`, else
    limits.default_timeout_ms), counted from when the request arrived (RequestMiddleware notes
    it), so reading and parsing the body come out of the same budget. Outside the middleware
    (an app without it) it counts from now."""
    limits = services.settings.limits
    fallback = default_ms if default_ms is not None else limits.default_timeout_ms
    ms = timeout_ms if timeout_ms is not None else fallback
    if ms > limits.max_timeout_ms:
        raise InvalidRequest(
            f"timeout_ms {ms} is above the maximum {limits.max_timeout_ms}", field="timeout_ms"
        )
    start = arrived(request)
    return Deadline.since(start if start is not None else time.perf_counter(), ms / 1000)


def search_params(
    body: SearchRequest, services: Services, request: Request
) -> tuple[SearchParams, Deadline]:
    """(what to search, the request's Deadline) of a /search request."""
    limits = services.settings.limits
    window = body.window if body.window is not None else limits.default_window
    if window > limits.max_window:
        raise InvalidRequest(
            f"window {window} is above the configured maximum {limits.max_window}", field="window"
        )
    if body.size > limits.max_size:
        raise InvalidRequest(
            f"size {body.size} is above the maximum {limits.max_size}", field="size"
        )
    if body.from_ + body.size > max(limits.max_result_window, window):
        raise InvalidRequest(
            f"from + size must not exceed {limits.max_result_window}", field="from"
        )
    deadline = deadline_for(request, body.timeout_ms, services)
    rules = (
        services.rules.variant(body.rules, body.user_key) if body.rules or body.user_key else None
    )
    params = SearchParams(
        index=allowed_index(body.index or services.settings.engine.default_index, services),
        query=parse_query(body.query, services.normalizer),
        filters=to_filters(body.filters),
        offset=body.from_,
        size=body.size,
        window=window,
        instruction=body.instruction or services.settings.scorer.instruction,
        rules=rules,
        raw_query=body.raw_query,
        retrieval=body.retrieval,
    )
    return params, deadline


def allowed_index(index: str, services: Services) -> str:
    """`index` when engine.allowed_indices permits it; Forbidden (403) naming it otherwise."""
    engine = services.settings.engine
    if not engine.index_allowed(index):
        allowed = ", ".join(engine.allowed_indices or [engine.default_index])
        raise Forbidden(
            f"index {index!r} is not allowed (engine.allowed_indices: {allowed})", field="index"
        )
    return index


# Body keys that run code on the engine: refused on the drop-in unless engine.allow_scripts.
SCRIPT_KEYS = frozenset(
    {"script", "script_score", "script_fields", "runtime_mappings", "scripted_metric"}
)


def refuse_scripts(node: object, services: Services, where: str = "body") -> None:
    if services.settings.engine.allow_scripts:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SCRIPT_KEYS:
                raise Forbidden(
                    f"{where}.{key}: scripts are not allowed (engine.allow_scripts)",
                    field=f"{where}.{key}",
                )
            refuse_scripts(value, services, f"{where}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            refuse_scripts(item, services, f"{where}[{i}]")


def to_documents(items: list[str | RerankDocument]) -> list[Document]:
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            if not item.strip():
                raise InvalidRequest("document is empty", field=f"documents[{i}]")
            out.append(make_document(str(i), item.strip()))
        else:
            images = (item.image_url,) if item.image_url else ()
            out.append(make_document(str(i), (item.text or "").strip(), image_urls=images))
    return out


def rerank_inputs(
    body: RerankRequest, services: Services, request: Request
) -> tuple[Query, list[Document], str, Deadline]:
    """(query, documents, instruction, deadline) of an /api/rerank request: the rerank routes'
    default budget (limits.rerank_timeout_ms), counted from the request's arrival."""
    limit = services.settings.limits.max_rerank_documents
    if not body.documents:
        raise InvalidRequest("documents is empty", field="documents")
    if len(body.documents) > limit:
        raise InvalidRequest(
            f"{len(body.documents)} documents; at most {limit} per request", field="documents"
        )
    query = parse_query(body.query, services.normalizer)
    documents = to_documents(body.documents)
    instruction = body.instruction or services.settings.scorer.instruction
    deadline = deadline_for(
        request, body.timeout_ms, services, services.settings.limits.rerank_timeout_ms
    )
    return query, documents, instruction, deadline


def as_rerank_request(body: V1RerankRequest) -> RerankRequest:
    """The /api/rerank request with the same meaning as a /v1/rerank one (a data URI image
    becomes base64)."""
    if isinstance(body.query, str):
        query: str | QueryObject = body.query
    else:
        image = body.query.image
        inline = image is not None and image.startswith("data:")
        query = QueryObject(
            text=body.query.text,
            image_url=None if inline else image,
            image_base64=image if inline else None,
        )
    documents: list[str | RerankDocument] = [
        d if isinstance(d, str) else RerankDocument(text=d.text, image_url=d.image)
        for d in body.documents
    ]
    return RerankRequest(
        query=query, documents=documents, instruction=body.instruction, timeout_ms=body.timeout_ms
    )


def v2_as_rerank_request(body: V2RerankRequest) -> RerankRequest:
    """The /api/rerank request with the same meaning as a Cohere v2 one. `max_tokens_per_doc`
    keeps each document's first that many words: the routes have no tokenizer, and a word is
    one token or more, so the cut is never shorter than asked (scorer.max_doc_chars still
    applies after it)."""
    if body.relevant_spans is not None and body.relevant_spans.mode == "enabled":
        raise InvalidRequest(
            "relevant spans are not produced by this sidecar's reranker: leave relevant_spans "
            "out or send mode: disabled",
            field="relevant_spans.mode",
        )
    limit = body.max_tokens_per_doc
    documents: list[str | RerankDocument] = [
        d if limit is None else " ".join(d.split()[:limit]) for d in body.documents
    ]
    return RerankRequest(
        query=body.query,
        documents=documents,
        instruction=body.instruction,
        timeout_ms=body.timeout_ms,
    )


def tei_rerank_inputs(
    body: TEIRerankRequest, services: Services, request: Request
) -> tuple[Query, list[Document], str, Deadline]:
    """(query, documents, instruction, deadline) of a TEI /rerank request. Documents are cut to
    scorer.max_doc_chars at the end (`truncation_direction: right`) or, for `left`, here at the
    start, so the scorer reads the end of the text. Fields are named as TEI names them."""
    keep = services.settings.scorer.max_doc_chars
    left = body.truncation_direction.lower() == "left"
    texts: list[str | RerankDocument] = [t[-keep:] if left else t for t in body.texts]
    as_rerank = RerankRequest(
        query=body.query, documents=texts, instruction=body.instruction, timeout_ms=body.timeout_ms
    )
    try:
        return rerank_inputs(as_rerank, services, request)
    except InvalidRequest as exc:
        if exc.field is not None and exc.field.startswith("documents"):
            exc.field = "texts" + exc.field.removeprefix("documents")
            exc.message = exc.message.replace("document", "text")
        raise
