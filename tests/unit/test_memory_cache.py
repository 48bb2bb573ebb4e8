import time

from sidecar.cache.memory import MemoryCache


async def test_round_trip_and_lru_eviction() -> None:
    cache = MemoryCache(max_entries=2)
    await cache.set_many({"a": 0.1, "b": 0.2}, ttl_s=60)
    assert await cache.get_many(["a", "x"]) == [0.1, None]  # touching "a" makes "b" the oldest
    await cache.set_many({"c": 0.3}, ttl_s=60)
    assert await cache.get_many(["a", "b", "c"]) == [0.1, None, 0.3]
    assert cache.stats()["hits"] == 3 and cache.stats()["misses"] == 2


async def test_entries_expire(monkeypatch) -> None:
    cache = MemoryCache()
    await cache.set_many({"a": 0.5}, ttl_s=10)
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + 11)
    assert await cache.get_many(["a"]) == [None]


async def test_delete_prefix() -> None:
    cache = MemoryCache()
    await cache.set_many({"rr:m1:a": 1.0, "rr:m2:b": 1.0}, ttl_s=60)
    assert await cache.delete_prefix("rr:m1:") == 1
    assert await cache.get_many(["rr:m1:a", "rr:m2:b"]) == [None, 1.0]
