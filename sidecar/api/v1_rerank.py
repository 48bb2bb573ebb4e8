"""POST /v1/rerank: the reranking shape shared by Jina, Cohere and vLLM, served by this sidecar.

    {"model": "...", "query": "text" | {"text": ..., "image": url-or-data-uri},
     "documents": ["text", {"text": ..., "image": url}, ...], "top_n": 3,
     "return_documents": false, "instruction": "..."}
    -> {"model": "...", "results": [{"index": 0, "relevance_score": 0.93}, ...], "usage": {...}}

One sidecar serves one model: `model` is accepted for compatibility and the answer names the model
that scored. `instruction` is this sidecar's extension (Lychee's instruct); others ignore it. It
scores through the same pipeline as /api/rerank (cache included), so another sidecar's `remote`
scorer can use it as its model.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sidecar.api.deps import ServicesDep
from sidecar.api.models import QueryObject, RerankDocument, RerankRequest
from sidecar.api.rerank import score_pairs

router = APIRouter()


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class V1Query(_Body):
    text: str | None = Field(None, max_length=2048)
    image: str | None = Field(None, max_length=16 * 1024 * 1024, description="URL or data URI")

    @model_validator(mode="after")
    def _something(self) -> V1Query:
        if not (self.text and self.text.strip()) and not self.image:
            raise ValueError("a query needs text, an image, or both")
        return self


class V1Document(_Body):
    text: str | None = Field(None, max_length=65536)
    image: str | None = Field(None, max_length=4096, description="URL (or catalog path)")

    @model_validator(mode="after")
    def _something(self) -> V1Document:
        if not (self.text and self.text.strip()) and not self.image:
            raise ValueError("a document needs text, an image, or both")
        if self.image and self.image.startswith("data:"):
            raise ValueError("document images must be URLs, not data URIs")
        return self


class V1RerankRequest(_Body):
    model: str | None = Field(None, max_length=256)
    query: str | V1Query
    documents: list[str | V1Document]
    top_n: int | None = Field(None, ge=1)
    return_documents: bool = False
    instruction: str | None = Field(None, max_length=1024)


@router.post("/v1/rerank")
async def v1_rerank(body: V1RerankRequest, services: ServicesDep) -> dict[str, Any]:
    report = await score_pairs(services, as_rerank_request(body))
    scores = [s if s is not None else 0.0 for s in report.scores]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[: body.top_n]
    results = []
    for i in order:
        result: dict[str, Any] = {"index": i, "relevance_score": scores[i]}
        if body.return_documents:
            doc = body.documents[i]
            result["document"] = (
                {"text": doc} if isinstance(doc, str) else doc.model_dump(exclude_none=True)
            )
        results.append(result)
    return {
        "model": services.scorer.model_id,
        "results": results,
        "usage": {"documents": len(body.documents)},
        "meta": {
            "cache_hits": report.cache_hits,
            "flags": {str(i): flags for i, flags in report.flags.items()},
        },
    }


def as_rerank_request(body: V1RerankRequest) -> RerankRequest:
    """The /api/rerank request with the same meaning (a data URI image becomes base64)."""
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
    return RerankRequest(query=query, documents=documents, instruction=body.instruction)
