"""Request and response bodies of the public API (they are also the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Scalar = str | int | float | bool
QueryText = Annotated[str, Field(max_length=2048)]


def refuse_uncarriable(value: Any) -> None:
    """Strings a cache key, a log line and an engine can all carry: no lone surrogates (JSON
    allows "\\ud800"; UTF-8 does not) and no NUL. Walks lists and dicts (keys too)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = value[exc.start]
            raise ValueError(
                f"contains a lone surrogate (U+{ord(bad):04X}) at position {exc.start}"
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_uncarriable(key)
            refuse_uncarriable(item)
    elif isinstance(value, list | tuple):
        for item in value:
            refuse_uncarriable(item)


class Body(BaseModel):
    """A request body: unknown keys are refused, aliases (`from`) accepted, and every string
    must be one that UTF-8, cache keys and engines carry (see `refuse_uncarriable`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("*", mode="after")
    @classmethod
    def _carriable(cls, value: Any) -> Any:
        if not isinstance(value, BaseModel):  # a nested body checks its own fields
            refuse_uncarriable(value)
        return value


class QueryObject(Body):
    text: str | None = Field(None, max_length=2048)
    image_url: str | None = Field(None, max_length=4096)
    image_base64: str | None = Field(None, max_length=16 * 1024 * 1024)


class RangeBounds(Body):
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> RangeBounds:
        if all(v is None for v in (self.gte, self.gt, self.lte, self.lt)):
            raise ValueError("a range needs at least one of gte, gt, lte, lt")
        if self.gte is not None and self.gt is not None:
            raise ValueError("give gte or gt, not both")
        if self.lte is not None and self.lt is not None:
            raise ValueError("give lte or lt, not both")
        return self


class Filters(Body):
    term: dict[Annotated[str, Field(max_length=256)], Scalar | list[Scalar]] = Field(
        {}, max_length=64
    )
    range: dict[Annotated[str, Field(max_length=256)], RangeBounds] = Field({}, max_length=64)

    @field_validator("term")
    @classmethod
    def _non_empty_lists(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, item in value.items():
            if isinstance(item, list) and not item:
                raise ValueError(f"term filter {name!r} has an empty list")
            items = item if isinstance(item, list) else [item]
            if len(items) > 1024:
                raise ValueError(f"term filter {name!r} has more than 1024 values")
            if any(isinstance(v, str) and len(v) > 1024 for v in items):
                raise ValueError(f"term filter {name!r} has a value over 1024 characters")
        return value


class SearchRequest(Body):
    query: QueryText | QueryObject = Field(
        ..., description="text, or {text, image_url|image_base64}"
    )
    index: str | None = Field(None, min_length=1, max_length=255)
    filters: Filters = Filters()
    from_: int = Field(0, alias="from", ge=0)
    size: int = Field(10, ge=0)
    window: int | None = Field(None, ge=1)
    instruction: str | None = Field(None, max_length=1024)
    explain: bool = False
    timeout_ms: int | None = Field(None, ge=1)
    rules: str | None = Field(None, max_length=128, description="rules variant name")
    user_key: str | None = Field(
        None, max_length=256, description="stable key (user/session) for variant assignment"
    )
    retrieval: Literal["lexical", "hybrid"] | None = Field(
        None,
        description="the first stage: `lexical` (the engine's text search) or `hybrid` (a "
        "vector leg beside it, fused); null: hybrid.enabled decides",
    )
    raw_query: dict[str, Any] | None = Field(
        None,
        description="an engine search body ({'query': {...}, ...}) run instead of the built "
        "multi_match (Elasticsearch/OpenSearch only); `query` is still what the model scores",
    )


def require_text_or_image(text: str | None, image: str | None, what: str) -> None:
    """A query or document must carry something to score."""
    if not (text and text.strip()) and not image:
        raise ValueError(f"{what} needs text, an image, or both")


class RerankDocument(Body):
    text: str | None = Field(None, max_length=65536)
    image_url: str | None = Field(None, max_length=4096)

    @model_validator(mode="after")
    def _something(self) -> RerankDocument:
        if not (self.text and self.text.strip()) and not self.image_url:
            raise ValueError("a document needs text, an image_url, or both")
        return self


class RerankRequest(Body):
    query: QueryText | QueryObject
    documents: list[str | RerankDocument]
    instruction: str | None = Field(None, max_length=1024)
    top_n: int | None = Field(None, ge=1)
    timeout_ms: int | None = Field(
        None, ge=1, description="scoring budget; default limits.rerank_timeout_ms"
    )


class RerankResult(BaseModel):
    index: int
    score: float
    band: str
    document: str | RerankDocument
    # why this score is not to be trusted as is (e.g. `unreadable_script: ...`, `image_failed`)
    flags: list[str] = []


class RerankResponse(BaseModel):
    results: list[RerankResult]
    model: str
    rerank_status: str
    reason: str = ""
    cache: dict[str, Any]
    timings: dict[str, float]


# /v1/rerank: the shape shared by Jina, Cohere and vLLM


class V1Query(Body):
    text: str | None = Field(None, max_length=2048)
    image: str | None = Field(None, max_length=16 * 1024 * 1024, description="URL or data URI")

    @model_validator(mode="after")
    def _something(self) -> V1Query:
        require_text_or_image(self.text, self.image, "a query")
        return self


class V1Document(Body):
    text: str | None = Field(None, max_length=65536)
    image: str | None = Field(None, max_length=4096, description="URL (or catalog path)")

    @model_validator(mode="after")
    def _something(self) -> V1Document:
        require_text_or_image(self.text, self.image, "a document")
        if self.image and self.image.startswith("data:"):
            raise ValueError("document images must be URLs, not data URIs")
        return self


class V1RerankRequest(Body):
    model: str | None = Field(None, max_length=256)
    query: QueryText | V1Query
    documents: list[str | V1Document]
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False
    instruction: str | None = Field(None, max_length=1024)
    timeout_ms: int | None = Field(
        None, ge=1, description="scoring budget (this sidecar's extension, sent by `remote`)"
    )


# /v2/rerank: Cohere's v2 shape (the `cohere` SDK's ClientV2.rerank)

DocumentText = Annotated[str, Field(max_length=65536)]


class V2RelevantSpans(Body):
    mode: Literal["enabled", "disabled"]
    threshold: float | None = None
    max_spans: int | None = Field(None, ge=1)


class V2RerankRequest(Body):
    model: str | None = Field(None, max_length=256, description="accepted and ignored")
    query: QueryText
    documents: list[DocumentText]
    top_n: int | None = Field(None, ge=1)
    max_tokens_per_doc: int | None = Field(
        None, ge=1, description="documents are cut to this many words before scoring"
    )
    relevant_spans: V2RelevantSpans | None = Field(None, description="only mode: disabled")
    priority: int | None = Field(None, ge=0, description="accepted and ignored")
    instruction: str | None = Field(None, max_length=1024, description="this sidecar's extension")
    timeout_ms: int | None = Field(
        None, ge=1, description="scoring budget (this sidecar's extension)"
    )


# /rerank: the text-embeddings-inference (Hugging Face TEI) shape


class TEIRerankRequest(Body):
    """TEI ignores keys it does not know (serde's default), so this body does too."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    query: QueryText
    texts: list[DocumentText]
    raw_scores: bool = False
    return_text: bool = False
    truncate: bool | None = Field(
        False, description="accepted; documents are always cut to scorer.max_doc_chars"
    )
    truncation_direction: Literal["left", "right", "Left", "Right"] = "right"
    instruction: str | None = Field(None, max_length=1024, description="this sidecar's extension")
    timeout_ms: int | None = Field(
        None, ge=1, description="scoring budget (this sidecar's extension)"
    )
