"""Redis score cache: one MGET per request, pipelined SETEX writes, and a circuit breaker.

Standalone, Cluster and Sentinel URLs work (see sidecar.cache.connect). On a cluster a request's
keys fall into many hash slots, so the read is MGET per node (`mget_nonatomic`), still one call.

When Redis fails, the breaker opens: for `cooldown_s` no request waits on a dead server, every
lookup raises CacheUnavailable at once, and the pipeline scores without the cache. After the
cooldown the next call tries Redis again; success closes the breaker, so it recovers by itself.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from redis.exceptions import RedisError

from sidecar.cache.base import CacheUnavailable
from sidecar.cache.connect import connect, parse_redis_url


class CircuitBreaker:
    def __init__(self, cooldown_s: float) -> None:
        self.cooldown_s = cooldown_s
        self._open_until = 0.0

    @property
    def state(self) -> str:
        if self._open_until == 0.0:
            return "closed"
        return "open" if time.monotonic() < self._open_until else "half_open"

    def allow(self) -> bool:
        return self.state != "open"

    def success(self) -> None:
        self._open_until = 0.0

    def failure(self) -> None:
        self._open_until = time.monotonic() + self.cooldown_s


class RedisCache:
    name = "redis"

    def __init__(self, url: str, timeout_s: float = 0.25, cooldown_s: float = 5.0) -> None:
        self.url = url
        self.target = parse_redis_url(url)
        self._client, self._helpers = connect(self.target, timeout_s)
        self.breaker = CircuitBreaker(cooldown_s)
        self.hits = 0
        self.misses = 0
        self.errors = 0

    async def get_many(self, keys: Sequence[str]) -> list[float | None]:
        if not keys:
            return []
        if self.target.mode == "cluster":
            raw = await self._guarded(self._client.mget_nonatomic(list(keys)))
        else:
            raw = await self._guarded(self._client.mget(list(keys)))
        out = [float(v) if v is not None else None for v in raw]
        found = sum(v is not None for v in out)
        self.hits += found
        self.misses += len(out) - found
        return out

    async def set_many(self, items: Mapping[str, float], ttl_s: int) -> None:
        if not items:
            return
        pipe = self._client.pipeline(transaction=False)
        for key, score in items.items():
            pipe.set(key, repr(float(score)), ex=ttl_s)
        await self._guarded(pipe.execute())

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under `prefix` (SCAN, then UNLINK in batches); the number deleted.
        Raises CacheUnavailable when Redis cannot be reached."""
        if not self.breaker.allow():
            raise CacheUnavailable(f"redis circuit open (cooldown {self.breaker.cooldown_s}s)")
        pattern = _glob_escape(prefix) + "*"
        deleted, batch = 0, []
        try:
            async for key in self._client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += await self._unlink(batch)
                    batch = []
        except (RedisError, OSError) as exc:
            self.errors += 1
            self.breaker.failure()
            raise CacheUnavailable(f"redis: {exc.__class__.__name__}: {exc}") from exc
        if batch:
            deleted += await self._unlink(batch)
        return deleted

    async def _unlink(self, keys: list[bytes]) -> int:
        # RedisCluster splits a multi-key UNLINK by hash slot itself
        return int(await self._guarded(self._client.unlink(*keys)))

    async def ping(self) -> bool:
        try:
            return bool(await self._guarded(self._client.ping()))
        except CacheUnavailable:
            return False

    async def _guarded(self, call: Any) -> Any:
        if not self.breaker.allow():
            call.close()  # never awaited: close the coroutine so it does not warn
            raise CacheUnavailable(f"redis circuit open (cooldown {self.breaker.cooldown_s}s)")
        try:
            result = await call
        except (RedisError, OSError) as exc:
            self.errors += 1
            self.breaker.failure()
            raise CacheUnavailable(f"redis: {exc.__class__.__name__}: {exc}") from exc
        self.breaker.success()
        return result

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


def _glob_escape(text: str) -> str:
    """`text` as a literal in a Redis MATCH pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
