"""Redis score cache: one MGET per request, pipelined SETEX writes, and a circuit breaker.

When Redis fails, the breaker opens: for `cooldown_s` no request waits on a dead server, every
lookup raises CacheUnavailable at once, and the pipeline scores without the cache. After the
cooldown the next call tries Redis again; success closes the breaker, so it recovers by itself.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sidecar.cache.base import CacheUnavailable


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
        self._client = aioredis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
            health_check_interval=30,
        )
        self.breaker = CircuitBreaker(cooldown_s)
        self.hits = 0
        self.misses = 0
        self.errors = 0

    async def get_many(self, keys: Sequence[str]) -> list[float | None]:
        if not keys:
            return []
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
        deleted = 0
        async for key in self._client.scan_iter(match=prefix + "*", count=1000):
            deleted += int(await self._guarded(self._client.delete(key)))
        return deleted

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
            "hits": self.hits,
            "misses": self.misses,
            "errors": self.errors,
            "breaker": self.breaker.state,
        }

    async def close(self) -> None:
        await self._client.aclose()
