"""The Redis cache's circuit breaker: it opens after N failures within a window, lets one probe
through when half-open, and after Redis comes back every request finds the cache again (no
request fails on a pooled connection left over from before the outage).

The first tests drive the breaker's state machine alone with a fake clock (no sleeping, no
Redis). The others run against a real redis-server this test owns and SIGKILLs / restarts on
the same port; they poll with bounded loops and assert what happens, never how fast.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

from sidecar.cache.base import CacheUnavailable
from sidecar.cache.redis import CircuitBreaker, RedisCache
from tests.redis_server import RedisServer


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fail(breaker: CircuitBreaker) -> bool:
    permit = breaker.acquire()
    assert permit is not None and not permit.probe
    return breaker.failure(permit)


# --- the state machine, with a fake clock ------------------------------------------------------


def test_one_failure_does_not_open_the_breaker_n_within_the_window_do() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(cooldown_s=5, failures=3, window_s=10, clock=clock)
    assert fail(breaker) is False and breaker.state == "closed"
    clock.advance(4)
    assert fail(breaker) is False and breaker.state == "closed"
    clock.advance(4)
    assert fail(breaker) is True and breaker.state == "open"
    assert breaker.acquire() is None  # open: nothing goes to Redis


def test_failures_spread_wider_than_the_window_do_not_open_it() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(cooldown_s=5, failures=3, window_s=10, clock=clock)
    for _ in range(10):
        assert fail(breaker) is False
        clock.advance(6)  # never three within 10 s
    assert breaker.state == "closed"


def test_half_open_lets_one_probe_through_and_its_success_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(cooldown_s=5, failures=1, window_s=10, clock=clock)
    assert fail(breaker) is True
    clock.advance(4.9)
    assert breaker.state == "open" and breaker.acquire() is None
    clock.advance(0.2)
    assert breaker.state == "half_open"
    probe = breaker.acquire()
    assert probe is not None and probe.probe
    assert [breaker.acquire() for _ in range(5)] == [None] * 5  # the probe is in flight
    assert breaker.state == "half_open"
    breaker.success(probe)
    assert breaker.state == "closed"
    permit = breaker.acquire()
    assert permit is not None and not permit.probe


def test_a_failed_probe_reopens_for_a_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(cooldown_s=5, failures=3, window_s=10, clock=clock)
    for _ in range(3):
        fail(breaker)
    clock.advance(5)
    probe = breaker.acquire()
    assert probe is not None and probe.probe
    assert breaker.failure(probe) is True  # one failed probe is enough: no new count of N
    assert breaker.state == "open" and breaker.acquire() is None
    clock.advance(5)
    assert breaker.state == "half_open"
    again = breaker.acquire()
    assert again is not None and again.probe


def test_calls_from_before_the_breaker_opened_do_not_decide_its_state() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(cooldown_s=5, failures=2, window_s=10, clock=clock)
    slow = [breaker.acquire() for _ in range(3)]  # three calls in flight while closed
    assert all(p is not None for p in slow)
    assert breaker.failure(slow[0]) is False
    assert breaker.failure(slow[1]) is True  # open
    clock.advance(4)
    assert breaker.failure(slow[2]) is False  # a straggler does not extend the cooldown
    clock.advance(1)
    assert breaker.state == "half_open"
    probe = breaker.acquire()
    assert probe is not None
    breaker.success(slow[2])  # nor does a straggler's success close a half-open breaker
    assert breaker.state == "half_open" and breaker.acquire() is None
    breaker.success(probe)
    assert breaker.state == "closed"


def test_a_cancelled_probe_passes_the_turn_to_the_next_call() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(cooldown_s=5, failures=1, window_s=10, clock=clock)
    fail(breaker)
    clock.advance(5)
    probe = breaker.acquire()
    assert probe is not None and probe.probe and breaker.acquire() is None
    breaker.release(probe)  # cancelled: no verdict on Redis
    assert breaker.state == "half_open"
    next_probe = breaker.acquire()
    assert next_probe is not None and next_probe.probe


# --- a real redis-server, killed and restarted ---------------------------------------------------


def kill(server: RedisServer) -> None:
    """SIGKILL: no goodbye to the clients, the pooled sockets are simply dead."""
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait(timeout=10)
    server.proc = None


async def fill_pool(cache: RedisCache, connections: int = 10) -> None:
    """Concurrent calls, so the client pools several connections (all dead after a kill)."""
    await asyncio.gather(*(cache.get_many(["k"]) for _ in range(connections)))


async def concurrent_rounds(cache: RedisCache, rounds: int = 5, width: int = 10) -> list[Any]:
    """`rounds` x `width` get_many calls, `width` at a time (so several pooled connections are
    used), with what each returned or raised."""
    out: list[Any] = []
    for _ in range(rounds):
        calls = (cache.get_many(["k", "other"]) for _ in range(width))
        out += await asyncio.gather(*calls, return_exceptions=True)
    return out


async def until_half_open(cache: RedisCache) -> None:
    for _ in range(400):  # bounded: the cooldown is 0.2 s
        if cache.breaker.state == "half_open":
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"breaker still {cache.breaker.state}")


@pytest.mark.redis
async def test_a_lost_connection_does_not_open_the_breaker_and_its_siblings_are_dropped(
    own_redis: RedisServer,
) -> None:
    cache = RedisCache(own_redis.url, timeout_s=1.0, cooldown_s=30, failures=3)
    try:
        await fill_pool(cache)
        kill(own_redis)
        own_redis.start()  # back on the same port before any request noticed
        outcomes = [await _outcome(cache.get_many(["k"])) for _ in range(3)]
        assert cache.breaker.state == "closed"  # at most one transient error: not an outage
        assert cache.errors <= 1 and outcomes[-1] == [None]
        results = await concurrent_rounds(cache)
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert results == [[None, None]] * 50 and cache.breaker.state == "closed"
    finally:
        await cache.close()


@pytest.mark.redis
async def test_half_open_sends_exactly_one_call_to_redis(own_redis: RedisServer) -> None:
    cache = RedisCache(own_redis.url, timeout_s=1.0, cooldown_s=0.2, failures=3)
    gated = GatedClient(cache._client)
    cache._client = gated
    try:
        await fill_pool(cache)
        kill(own_redis)
        for _ in range(3):
            with pytest.raises(CacheUnavailable, match="ConnectionError"):
                await cache.get_many(["k"])
        assert cache.breaker.state == "open"
        own_redis.start()
        await until_half_open(cache)
        server = redis.Redis.from_url(own_redis.url)
        server.config_resetstat()
        gated.hold()
        probe = asyncio.create_task(cache.get_many(["k"]))
        await asyncio.wait_for(gated.entered.wait(), timeout=10)  # the probe is in flight
        before = gated.mgets
        for _ in range(10):
            with pytest.raises(CacheUnavailable, match="probe is in flight"):
                await cache.get_many(["k"])
        others = await asyncio.gather(
            *(cache.get_many(["k"]) for _ in range(10)), return_exceptions=True
        )
        assert all(isinstance(r, CacheUnavailable) for r in others)
        assert gated.mgets == before == 1 and cache.breaker.state == "half_open"
        gated.release()
        assert await probe == [None]
        assert cache.breaker.state == "closed"
        assert _mget_calls(server) == 1  # only the probe reached the server
        results = await concurrent_rounds(cache, rounds=1)
        assert not [r for r in results if isinstance(r, BaseException)]
        assert _mget_calls(server) == 11
    finally:
        gated.release()
        await cache.close()


@pytest.mark.redis
async def test_after_a_kill_and_restart_every_request_finds_the_cache(
    own_redis: RedisServer,
) -> None:
    cache = RedisCache(own_redis.url, timeout_s=1.0, cooldown_s=0.2, failures=3)
    try:
        await cache.set_many({"k": 0.5}, ttl_s=60)
        await fill_pool(cache)
        assert len(redis.Redis.from_url(own_redis.url).client_list()) > 5  # a pool of sockets
        kill(own_redis)
        for _ in range(10):  # requests during the outage, until the breaker opens
            with pytest.raises(CacheUnavailable):
                await cache.get_many(["k"])
            if cache.breaker.state != "closed":
                break
        assert cache.breaker.state == "open"
        own_redis.start()  # same port, empty
        await until_half_open(cache)
        for _ in range(400):  # bounded: the first call after the cooldown is the probe
            try:
                assert await cache.get_many(["k"]) == [None]
                break
            except CacheUnavailable:
                await asyncio.sleep(0.01)
        assert cache.breaker.state == "closed"
        errors = cache.errors
        await cache.set_many({"k": 0.75}, ttl_s=60)
        results = await concurrent_rounds(cache)
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert results == [[0.75, None]] * 50
        assert cache.errors == errors and cache.stats()["breaker"] == "closed"
    finally:
        await cache.close()


@pytest.mark.redis
async def test_a_value_that_is_not_a_score_is_a_miss_and_an_error(own_redis: RedisServer) -> None:
    raw = redis.Redis.from_url(own_redis.url)
    raw.set("rr:text", "not-a-score")
    raw.set("rr:binary", b"\xff\xfe")
    raw.set("rr:nan", "nan")
    raw.set("rr:good", "0.25")
    cache = RedisCache(own_redis.url, timeout_s=1.0)
    try:
        got = await cache.get_many(["rr:text", "rr:binary", "rr:nan", "rr:good", "rr:none"])
        assert got == [None, None, None, 0.25, None]
        stats = cache.stats()
        assert (stats["hits"], stats["misses"], stats["errors"]) == (1, 4, 3)
        assert stats["breaker"] == "closed"  # Redis answered: not a breaker failure
    finally:
        await cache.close()


class GatedClient:
    """The real client, counting MGETs; while held, an MGET waits at the gate before it is
    sent, so a test can act while that call is in flight."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.mgets = 0
        self.entered = asyncio.Event()
        self._gate = asyncio.Event()
        self._gate.set()

    def hold(self) -> None:
        self.mgets = 0
        self.entered.clear()
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    async def mget(self, keys: list[str]) -> Any:
        self.mgets += 1
        self.entered.set()
        await self._gate.wait()
        return await self._inner.mget(keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


async def _outcome(call: Any) -> Any:
    try:
        return await call
    except CacheUnavailable as exc:
        return exc


def _mget_calls(server: redis.Redis) -> int:
    return int(server.info("commandstats").get("cmdstat_mget", {}).get("calls", 0))
