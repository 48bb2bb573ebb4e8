"""POST /api/explain: which parts of one product drive its score for a query.

Leave-one-out over fragments: the product is scored whole, then once without each selling point
and once without each title word, all in one batched scorer call (through the pipeline, so the
cache is used). A fragment's delta is `full score - score without it`: positive when the fragment
helps, negative when it hurts. Cheap and model-agnostic; it explains the model, not the rules.
With `scorer.calibration`, `score` and the fragments are calibrated (what answers and rules use)
and `raw_score` / `raw_score_without` are the scorer's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, model_validator

from sidecar.api.compat import usable
from sidecar.api.deps import ServicesDep
from sidecar.api.mapping import deadline_for, parse_query
from sidecar.api.models import Body, QueryObject, QueryText
from sidecar.documents import Document, make_document
from sidecar.errors import ScoringFailed
from sidecar.rules.ranking import band_of
from sidecar.services import Services

router = APIRouter()

MAX_SELLING_POINTS = 32
MAX_TITLE_WORDS = 64


class ExplainProduct(Body):
    title: str = Field("", max_length=1024)
    selling_points: list[str] = Field([], max_length=MAX_SELLING_POINTS)
    # A URL, or an uploaded image as a data: URL (the playground's upload).
    image_url: str | None = Field(None, max_length=16 * 1024 * 1024)

    @model_validator(mode="after")
    def _something(self) -> ExplainProduct:
        url = self.image_url or ""
        if len(url) > 4096 and not url.startswith("data:image/"):
            raise ValueError("image_url is longer than 4096 characters")
        self.selling_points = [p.strip() for p in self.selling_points if p.strip()]
        self.title = " ".join(self.title.split())
        if not self.title and not self.selling_points and not self.image_url:
            raise ValueError("a product needs a title, selling points or an image_url")
        if len(self.title.split()) > MAX_TITLE_WORDS:
            raise ValueError(f"title has more than {MAX_TITLE_WORDS} words")
        return self


class ExplainRequest(Body):
    query: QueryText | QueryObject
    product: ExplainProduct
    instruction: str | None = Field(None, max_length=1024)
    timeout_ms: int | None = Field(None, ge=1)


class Fragment(BaseModel):
    kind: str  # selling_point | title_word
    index: int  # position among the selling points, or among the title's words
    text: str
    score_without: float
    delta: float  # full score - score without this fragment
    raw_score_without: float  # the scorer's own score without it (before any calibration)


class ExplainResponse(BaseModel):
    score: float  # the model score answers use: calibrated when scorer.calibration is set
    raw_score: float  # the scorer's own score, before calibration (the same without one)
    calibration: str | None  # "<method>@<file hash>" of the calibration applied, or None
    band: str
    model: str
    fragments: list[Fragment]
    flags: list[str]  # about the whole product, e.g. an image that could not be used
    cache: dict[str, Any]
    timings: dict[str, float]


def variants(product: ExplainProduct) -> tuple[list[Document], list[tuple[str, int, str]]]:
    """The whole product first, then one document per left-out fragment, with what was left out."""
    images = (product.image_url,) if product.image_url else ()
    words = product.title.split()
    points = product.selling_points

    def doc(title: str, selling_points: list[str]) -> Document:
        base = make_document("", title, selling_points, images)
        # The content hash names the variant, so identical variants share a cache entry.
        return make_document(f"explain:{base.content_hash}", title, selling_points, images)

    documents = [doc(product.title, points)]
    removed: list[tuple[str, int, str]] = []
    for i, point in enumerate(points):
        documents.append(doc(product.title, points[:i] + points[i + 1 :]))
        removed.append(("selling_point", i, point))
    if len(words) > 1 or points or images:  # a one-word title alone has nothing left to score
        for i, word in enumerate(words):
            documents.append(doc(" ".join(words[:i] + words[i + 1 :]), points))
            removed.append(("title_word", i, word))
    return documents, removed


@router.post("/api/explain", response_model=ExplainResponse)
async def explain(body: ExplainRequest, services: ServicesDep, request: Request) -> dict[str, Any]:
    query = parse_query(body.query, services.normalizer)
    # no engine order to fall back on: the rerank routes' budget, as /api/rerank and /v1/rerank
    rerank_ms = services.settings.limits.rerank_timeout_ms
    deadline = deadline_for(request, body.timeout_ms, services, rerank_ms)
    documents, removed = variants(body.product)
    instruction = body.instruction or services.settings.scorer.instruction
    report = await services.pipeline.rerank(query, documents, instruction, deadline)
    scores, raw = _usable(report.scores, services), _usable(report.raw_scores, services)
    full = scores[0]
    fragments = [
        Fragment(
            kind=kind,
            index=i,
            text=text,
            score_without=without,
            delta=full - without,
            raw_score_without=raw_without,
        )
        for (kind, i, text), without, raw_without in zip(removed, scores[1:], raw[1:], strict=True)
    ]
    fragments.sort(key=lambda f: -abs(f.delta))
    calibration = services.scoring.calibration
    return {
        "score": full,
        "raw_score": raw[0],
        "calibration": calibration.version if calibration is not None else None,
        "band": band_of(services.rules.current.rules, full),
        "model": services.scorer.model_id,
        "fragments": fragments,
        "flags": report.flags.get(0, []),
        "cache": report.cache_summary(),
        "timings": report.timings,
    }


def _usable(scores: Sequence[float | None], services: Services) -> list[float]:
    """Every variant's score as a float: a fragment's delta is only meaningful beside the whole
    product's, so a variant left without a usable one (None, NaN) fails the explanation (503)
    rather than shifting the others onto the wrong fragments."""
    out = [usable(s) for s in scores]
    if any(s is None for s in out):
        missing = sum(s is None for s in out)
        raise ScoringFailed(
            f"the scorer gave no usable score for {missing} of {len(out)} variants",
            model=services.scorer.model_id,
        )
    return [s for s in out if s is not None]
