"""Redis score cache: one MGET per request, pipelined SETEX writes, and a circuit breaker.

Standalone, Cluster and Sentinel URLs work (see sidecar.cache.connect). On a cluster a request's
keys fall into many hash slots, so the read is MGET per node (`mget_nonatomic`), still one call.

When Redis fails `failures` times within `window_s`, the breaker opens: for `cooldown_s` no
request waits on a dead server, every call raises CacheUnavailable at once, and the pipeline
scores without the cache. After the cooldown the breaker is half-open: exactly one call (the
probe) goes to Redis while the others still get CacheUnavailable at once; the probe's success
closes the breaker, its failure opens it for another cooldown. The pooled connections are
dropped when the breaker opens and again when the probe starts, so once Redis is back no request
fails on a socket left over from before the outage. A value under a key that is not a number is
a miss and counts in `errors`.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from sidecar.cache.base import CacheUnavailable
from sidecar.cache.connect import connect, drop_idle_connections, parse_redis_url


@dataclass(frozen=True)
class Permit:
    """Leave to make one call; its outcome is reported back with it."""

    epoch: int  # the breaker's period (closed, or one open/half-open spell) it was given in
    probe: bool  # the one call a half-open breaker lets through


class CircuitBreaker:
    """closed --`failures` within `window_s`--> open --`cooldown_s`--> half_open --one probe-->
    closed (success) or open (failure).

    Outcomes are reported with the Permit the call got; an outcome from an earlier period (a call
    that started before the breaker opened and ended after) changes nothing.
    """

    def __init__(
        self,
        cooldown_s: float,
        failures: int = 3,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cooldown_s = cooldown_s
        self.failures = failures
        self.window_s = window_s
        self._clock = clock
        self._recent: deque[float] = deque()  # failure times while closed, within the window
        self._open_until: float | None = None  # None: closed
        self._probing = False
        self._epoch = 0

    @property
    def state(self) -> str:
        if self._open_until is None:
            return "closed"
        if self._probing or self._clock() >= self._open_until:
            return "half_open"
        return "open"

    @property
    def probing(self) -> bool:
        return self._probing

    def acquire(self) -> Permit | None:
        """A Permit for one call, or None: open, or half-open with the probe in flight."""
        state = self.state
        if state == "closed":
            return Permit(self._epoch, probe=False)
        if state == "open" or self._probing:
            return None
        self._probing = True
        return Permit(self._epoch, probe=True)

    def success(self, permit: Permit) -> None:
        if permit.epoch == self._epoch and permit.probe:
            self._enter(None)

    def failure(self, permit: Permit) -> bool:
        """Count a failed call; True when this failure opened the breaker."""
        if permit.epoch != self._epoch:
            return False
        now = self._clock()
        if not permit.probe:  # same epoch and not the probe: the breaker is closed
            self._recent.append(now)
            while self._recent and self._recent[0] <= now - self.window_s:
                self._recent.popleft()
            if len(self._recent) < self.failures:
                return False
        self._enter(now + self.cooldown_s)
        return True

    def release(self, permit: Permit) -> None:
        """The call ended without a verdict (cancelled): a probe's turn passes to the next call."""
        if permit.epoch == self._epoch and permit.probe:
            self._probing = False

    def _enter(self, open_until: float | None) -> None:
        self._open_until = open_until
        self._probing = False
        self._recent.clear()
        self._epoch += 1


class RedisCache:
    name = "redis"

    def __init__(
        self,
        url: str,
        timeout_s: float = 0.25,
        cooldown_s: float = 5.0,
        failures: int = 3,
        window_s: float = 10.0,
    ) -> None:
        self.url = url
        self.target = parse_redis_url(url)
        self._client, self._helpers = connect(self.target, timeout_s)
        self.breaker = CircuitBreaker(cooldown_s, failures, window_s)
        self.hits = 0
        self.misses = 0
        self.errors = 0

    async def get_many(self, keys: Sequence[str]) -> list[float | None]:
        if not keys:
            return []
        async with self._attempt():
            if self.target.mode == "cluster":
                raw = await self._client.mget_nonatomic(list(keys))
            else:
                raw = await self._client.mget(list(keys))
        out = [_score(v) for v in raw]
        found = sum(v is not None for v in out)
        self.errors += sum(v is not None for v in raw) - found  # values that are not scores
        self.hits += found
        self.misses += len(out) - found
        return out

    async def set_many(self, items: Mapping[str, float], ttl_s: int) -> None:
        if not items:
            return
        async with self._attempt():
            pipe = self._client.pipeline(transaction=False)
            for key, score in items.items():
                pipe.set(key, repr(float(score)), ex=ttl_s)
            await pipe.execute()

    async def get_bytes(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        async with self._attempt():
            if self.target.mode == "cluster":
                raw = await self._client.mget_nonatomic(list(keys))
            else:
                raw = await self._client.mget(list(keys))
        return [v if isinstance(v, bytes) else None for v in raw]

    async def set_bytes(self, items: Mapping[str, bytes], ttl_s: int) -> None:
        if not items:
            return
        async with self._attempt():
            pipe = self._client.pipeline(transaction=False)
            for key, value in items.items():
                pipe.set(key, value, ex=ttl_s)
            await pipe.execute()

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under `prefix` (SCAN, then UNLINK in batches); the number deleted.
        Raises CacheUnavailable when Redis cannot be reached."""
        pattern = _glob_escape(prefix) + "*"
        deleted, batch = 0, []
        async with self._attempt():  # the whole SCAN is one call to the breaker
            async for key in self._client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += await self._unlink(batch)
                    batch = []
            if batch:
                deleted += await self._unlink(batch)
        return deleted

    async def _unlink(self, keys: list[bytes]) -> int:
        # RedisCluster splits a multi-key UNLINK by hash slot itself
        return int(await self._client.unlink(*keys))

    async def ping(self) -> bool:
        try:
            async with self._attempt():
                return bool(await self._client.ping())
        except CacheUnavailable:
            return False

    @asynccontextmanager
    async def _attempt(self) -> AsyncIterator[None]:
        """One call to Redis under the breaker: refused at once while it is open (or while the
        half-open probe is in flight); a Redis error counts, and comes out as CacheUnavailable."""
        permit = self.breaker.acquire()
        if permit is None:
            if self.breaker.probing:
                raise CacheUnavailable("redis circuit half-open: a probe is in flight")
            raise CacheUnavailable(f"redis circuit open (cooldown {self.breaker.cooldown_s}s)")
        try:
            if permit.probe:
                await drop_idle_connections(self._client)  # sockets left from before are dead
            yield
        except (RedisError, OSError) as exc:
            self.errors += 1
            if self.breaker.failure(permit):
                await drop_idle_connections(self._client)
            elif isinstance(exc, RedisConnectionError) and self.target.mode != "cluster":
                # one connection lost (a restart, a dropped link): its idle siblings most likely
                # are too, and each would fail its next request. A cluster handles its own.
                await drop_idle_connections(self._client)
            raise CacheUnavailable(f"redis: {exc.__class__.__name__}: {exc}") from exc
        except BaseException:  # cancelled, or not a Redis failure: no verdict on Redis
            self.breaker.release(permit)
            raise
        self.breaker.success(permit)

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.name,
            "mode": self.target.mode,
            "hits": self.hits,
            "misses": self.misses,
            "errors": self.errors,
            "breaker": self.breaker.state,
        }

    async def close(self) -> None:
        await self._client.aclose()
        for helper in self._helpers:
            await helper.aclose()


def _score(value: Any) -> float | None:
    """A stored score, or None when the key is missing or holds something that is not one."""
    if value is None:
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return score if math.isfinite(score) else None


def _glob_escape(text: str) -> str:
    """`text` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
