"""The Redis score cache against a real redis-server, including losing it mid-run."""

from __future__ import annotations

import time

import pytest
import redis

from sidecar.cache.redis import RedisCache

pytestmark = pytest.mark.redis


def test_second_identical_request_is_served_from_redis(client_factory, redis_url) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    c = client_factory(cache={"kind": "redis", "redis_url": redis_url})
    first = c.post("/search", json={"query": "tent 4 person", "window": 40}).json()
    second = c.post("/search", json={"query": "tent 4 person", "window": 40}).json()
    assert first["cache"] == {"status": "ok", "hits": 0, "misses": 40}
    assert second["cache"] == {"status": "ok", "hits": 40, "misses": 0}
    assert [h["id"] for h in first["hits"]] == [h["id"] for h in second["hits"]]
    keys = redis.Redis.from_url(redis_url).keys("rr:all-MiniLM-L6-v2:*")
    assert len(keys) == 40
    assert 0 < redis.Redis.from_url(redis_url).ttl(keys[0]) <= 7 * 24 * 3600


def test_redis_outage_degrades_and_recovers(client_factory, own_redis) -> None:
    c = client_factory(
        cache={
            "kind": "redis",
            "redis_url": own_redis.url,
            "breaker_cooldown_s": 0.2,
            "timeout_s": 0.2,
        }
    )
    warm = c.post("/search", json={"query": "sleeping bag", "window": 20}).json()
    assert warm["cache"]["status"] == "ok"

    own_redis.stop()
    down = c.post("/search", json={"query": "sleeping bag", "window": 20})
    assert down.status_code == 200
    body = down.json()
    assert body["cache"]["status"] == "unavailable" and body["rerank_status"] == "ok"
    assert [h["id"] for h in body["hits"]] == [h["id"] for h in warm["hits"]]
    ready = c.get("/readyz").json()
    assert ready["cache"]["ready"] is False and ready["ready"] is True  # cache does not gate

    own_redis.start()  # same port: the client reconnects once the breaker lets it try
    time.sleep(0.3)
    again = c.post("/search", json={"query": "sleeping bag", "window": 20}).json()
    assert again["cache"]["status"] == "ok"
    back = c.post("/search", json={"query": "sleeping bag", "window": 20}).json()
    assert back["cache"] == {"status": "ok", "hits": 20, "misses": 0}


async def test_breaker_opens_fast_after_a_failure(own_redis) -> None:
    cache = RedisCache(own_redis.url, timeout_s=0.2, cooldown_s=30)
    await cache.set_many({"k": 0.5}, ttl_s=60)
    assert await cache.get_many(["k", "missing"]) == [0.5, None]
    own_redis.stop()
    from sidecar.cache.base import CacheUnavailable

    with pytest.raises(CacheUnavailable):
        await cache.get_many(["k"])
    assert cache.breaker.state == "open"
    started = time.perf_counter()
    with pytest.raises(CacheUnavailable, match="circuit open"):
        await cache.get_many(["k"])
    assert time.perf_counter() - started < 0.05  # no waiting on a dead server
    assert cache.stats()["errors"] == 1
    await cache.close()
