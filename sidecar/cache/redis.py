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
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from sidecar.breaker import CircuitBreaker, Permit
from sidecar.cache.base import CacheUnavailable
from sidecar.cache.connect import connect, drop_idle_connections, parse_redis_url

__all__ = ["CircuitBreaker", "Permit", "RedisCache"]  # the breaker lived here first


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
