"""One deadline through every stage: images that do not arrive in time leave their products scored
on text, flagged, and out of the cache; each stage's budget is in the timings."""

from __future__ import annotations

import asyncio
from typing import Any

from sidecar.backends.embedded import EmbeddedBackend
from sidecar.cache.memory import MemoryCache
from sidecar.config import FieldMap
from sidecar.deadline import Deadline
from sidecar.pipeline import Pipeline, SearchParams
from sidecar.query import Query
from sidecar.rules.store import RuleStore
from sidecar.scoring.minilm import MiniLMScorer
from sidecar.scoring_service import ScoringService
from tests.unit.test_images import loader, server

__all__ = ["server"]


class ReadsImages:
    """The real MiniLM on the text, declared image-reading so the pipeline loads images."""

    reads_images = True

    def __init__(self, inner: MiniLMScorer) -> None:
        self.inner, self.model_id, self.state = inner, inner.model_id, inner.state
        self.score_identity = inner.score_identity + "+images"

    async def score(
        self, query: Any, documents: Any, instruction: str, images: Any = None, *, deadline: Any
    ) -> Any:
        return await self.inner.score(query, documents, instruction, deadline=deadline)


def test_slow_images_are_cut_by_the_deadline_flagged_and_not_cached(
    server: str,
    minilm: MiniLMScorer,
) -> None:
    docs = [
        {"id": "slow", "title": "Waterproof hiking boots", "image_url": f"{server}/sleep.png?p"},
        {"id": "fast", "title": "Hiking boots, leather", "image_url": f"{server}/ok.png?p"},
    ]
    backend = EmbeddedBackend({"title": 1.0})
    backend.add_index("products", docs)
    images = loader(connect_timeout_s=10.0, read_timeout_s=10.0)  # only the deadline stops it
    cache = MemoryCache()
    scoring = ScoringService(ReadsImages(minilm), cache, images=images)
    pipeline = Pipeline(backend, scoring, RuleStore(), FieldMap())
    # 4 s: the images get at most half (the 5 s host is still cut), and the model keeps enough
    # for two short products on a busy machine, so only the image decides the outcome
    params = SearchParams(index="products", query=Query("hiking boots"))

    async def run() -> Any:
        try:
            first = await pipeline.search(params, Deadline.after(4.0))
            second = await pipeline.search(params, Deadline.after(4.0))
            return first, second
        finally:
            await images.close()

    first, second = asyncio.run(run())
    flags = {h.document.id: h.flags for h in first.hits}
    assert first.report.status == "ok"  # every product scored, the slow one on its text
    assert any("timeout: deadline passed" in f for f in flags["slow"]), flags
    assert flags["fast"] == ()
    assert {"engine_budget_ms", "images_budget_ms", "model_budget_ms"} <= set(first.timings)
    assert first.timings["images_budget_ms"] <= 2000  # at most half of the request's 4 s
    # the text-only score of the slow product was not cached; the fast one's was
    assert second.report.cache_hits == 1 and second.report.cache_misses == 1


def test_a_replaced_image_behind_the_same_url_is_a_cache_miss(
    server: str, minilm: MiniLMScorer
) -> None:
    """The pair key holds the image's content: new bytes at the old URL are scored anew."""
    from tests.unit.test_images import Handler, png

    docs = [{"id": "p1", "title": "Hiking boots", "image_url": f"{server}/swap.png?key"}]
    backend = EmbeddedBackend({"title": 1.0})
    backend.add_index("products", docs)
    images = loader(revalidate_s=0.2)
    scoring = ScoringService(ReadsImages(minilm), MemoryCache(), images=images)
    pipeline = Pipeline(backend, scoring, RuleStore(), FieldMap())
    params = SearchParams(index="products", query=Query("hiking boots"))

    async def run() -> list[Any]:
        try:
            Handler.swap = png((10, 10))
            first = await pipeline.search(params, Deadline.after(5.0))
            same = await pipeline.search(params, Deadline.after(5.0))
            Handler.swap = png((14, 14))
            await asyncio.sleep(0.3)  # past revalidate_s: the image is read again
            replaced = await pipeline.search(params, Deadline.after(5.0))
            return [first, same, replaced]
        finally:
            await images.close()

    first, same, replaced = asyncio.run(run())
    assert first.report.cache_misses == 1
    assert same.report.cache_hits == 1
    assert replaced.report.cache_misses == 1 and replaced.report.cache_hits == 0


def test_the_deadline_counts_from_the_requests_arrival(minilm: MiniLMScorer) -> None:
    """Time spent before the pipeline (reading and parsing the body) comes out of the same
    budget: a request that arrived 0.99 s into its 1 s budget leaves the engine almost nothing."""
    import time

    from sidecar.errors import EngineTimeout

    backend = EmbeddedBackend({"title": 1.0})
    backend.add_index("products", [{"id": "p1", "title": "Hiking boots"}])
    pipeline = Pipeline(backend, ScoringService(minilm, MemoryCache()), RuleStore(), FieldMap())
    params = SearchParams(index="products", query=Query("hiking boots"))
    late = Deadline.since(time.perf_counter() - 0.99, 1.0)

    async def budgets() -> tuple[float, float]:
        try:
            late_budget = (await pipeline.search(params, late)).timings["engine_budget_ms"]
        except EngineTimeout:  # the engine may not make it in what is left: that is the point
            late_budget = 0.0
        fresh = Deadline.after(1.0)
        return late_budget, (await pipeline.search(params, fresh)).timings["engine_budget_ms"]

    late_budget, fresh_budget = asyncio.run(budgets())
    assert late_budget < 10 < fresh_budget  # at most 0.6 x 10 ms left, against 0.6 x 1 s
