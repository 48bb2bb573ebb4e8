"""The ScoreCache contract: one round trip to read a request's keys, one to write its misses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable


class CacheUnavailable(Exception):
    """The cache cannot be reached; the caller scores without it and says `cache: unavailable`."""


class ScoreCache(Protocol):
    name: str

    async def get_many(self, keys: Sequence[str]) -> list[float | None]:
        """Scores for `keys`, None where missing. Raises CacheUnavailable."""
        ...

    async def set_many(self, items: Mapping[str, float], ttl_s: int) -> None:
        """Store scores with a time to live. Raises CacheUnavailable."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under `prefix`; how many were deleted. Raises CacheUnavailable."""
        ...

    async def ping(self) -> bool: ...

    def stats(self) -> dict[str, Any]:
        """Counters for /admin/cache/stats and /metrics: kind, hits, misses, errors, breaker."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class HoldsBytes(Protocol):
    """A cache shared by replicas that also holds byte values under its own keys: document
    embeddings (sidecar.scoring.shared_embeddings), so a new replica does not encode again what
    another already did. Redis has it; the in-process cache has no one to share with."""

    async def get_bytes(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values for `keys`, None where missing. Raises CacheUnavailable."""
        ...

    async def set_bytes(self, items: Mapping[str, bytes], ttl_s: int) -> None:
        """Store values with a time to live. Raises CacheUnavailable."""
        ...
