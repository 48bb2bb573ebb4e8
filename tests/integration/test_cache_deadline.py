"""The cache is a stage of the request's Deadline like the others: a Redis slower than its share
of the time left costs the request its cached scores (read as misses, `cache.status: timeout`),
not its deadline, and the scores computed meanwhile still reach Redis.

The slowness is real: a TCP proxy (tests/slow_proxy.py) holds back the replies of a real
redis-server. Asserts what happens, never how fast."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from sidecar.backends.embedded import EmbeddedBackend
from sidecar.cache.redis import RedisCache
from sidecar.config import FieldMap
from sidecar.deadline import Deadline
from sidecar.pipeline import Pipeline, SearchParams
from sidecar.query import Query
from sidecar.rules.store import RuleStore
from sidecar.scoring.minilm import MiniLMScorer
from sidecar.scoring_service import ScoringService
from tests.slow_proxy import SlowProxy


def test_a_slow_cache_read_is_cut_at_its_share_and_the_scores_still_land(
    redis_url: str, minilm: MiniLMScorer
) -> None:
    target = urlsplit(redis_url)
    proxy = SlowProxy(target.hostname or "127.0.0.1", target.port or 6379, delay=0.6).start()
    backend = EmbeddedBackend({"title": 1.0})
    backend.add_index(
        "products",
        [
            {"id": "boots-1", "title": "Waterproof hiking boots"},
            {"id": "boots-2", "title": "Leather hiking boots"},
        ],
    )
    prefix = "rr:deadline-test:"
    params = SearchParams(index="products", query=Query("hiking boots"))

    async def run() -> tuple[object, list[float | None]]:
        # Redis's own timeout is far above the request's: only the deadline can cut the read.
        slow = RedisCache(f"redis://127.0.0.1:{proxy.port}/0", timeout_s=5.0)
        direct = RedisCache(redis_url)
        scoring = ScoringService(minilm, slow, cache_prefix=prefix, cache_ttl_s=60)
        pipeline = Pipeline(backend, scoring, RuleStore(), FieldMap())
        try:
            await direct.delete_prefix(prefix)
            outcome = await pipeline.search(params, Deadline.after(1.0))
            await scoring.drain()  # the write that outlived the answer
            keys = [k.decode() for k in await direct._client.keys(prefix + "*")]
            return outcome, await direct.get_many(keys)
        finally:
            await direct.delete_prefix(prefix)
            await slow.close()
            await direct.close()

    try:
        outcome, stored = asyncio.run(run())
    finally:
        proxy.stop()
    report = outcome.report  # type: ignore[attr-defined]
    assert report.cache_status == "timeout"
    assert report.status == "ok" and all(s is not None for s in report.scores)
    assert report.timings["cache_budget_ms"] < 1000 * 0.25 + 1
    assert len(stored) == 2 and all(s is not None for s in stored)
