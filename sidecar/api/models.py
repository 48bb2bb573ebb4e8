"""Request and response bodies of the public API (they are also the OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Scalar = str | int | float | bool


class Body(BaseModel):
    """A request body: unknown keys are refused, aliases (`from`) accepted."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


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
    term: dict[str, Scalar | list[Scalar]] = {}
    range: dict[str, RangeBounds] = {}

    @field_validator("term")
    @classmethod
    def _non_empty_lists(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, item in value.items():
            if isinstance(item, list) and not item:
                raise ValueError(f"term filter {name!r} has an empty list")
        return value


class SearchRequest(Body):
    query: str | QueryObject = Field(..., description="text, or {text, image_url|image_base64}")
    index: str | None = Field(None, min_length=1, max_length=255)
    filters: Filters = Filters()
    from_: int = Field(0, alias="from", ge=0)
    size: int = Field(10, ge=0)
    window: int | None = Field(None, ge=1)
    instruction: str | None = Field(None, max_length=1024)
    explain: bool = False
    timeout_ms: int | None = Field(None, ge=1)
    rules: str | None = Field(None, description="rules variant name")
    user_key: str | None = Field(
        None, max_length=256, description="stable key (user/session) for variant assignment"
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
    query: str | QueryObject
    documents: list[str | RerankDocument]
    instruction: str | None = Field(None, max_length=1024)
    top_n: int | None = Field(None, ge=1)


class RerankResult(BaseModel):
    index: int
    score: float
    band: str
    document: str | RerankDocument


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
    query: str | V1Query
    documents: list[str | V1Document]
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False
    instruction: str | None = Field(None, max_length=1024)
