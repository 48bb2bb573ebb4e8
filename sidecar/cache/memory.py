"""The in-process score cache: a bounded LRU with per-entry expiry (the embedded default)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from cachetools import LRUCache


class MemoryCache:
    name = "memory"

    def __init__(self, max_entries: int = 200_000) -> None:
        # key -> (score, expiry). A plain LRU holding the expiry rather than a TLRUCache: the ttl
        # comes per set_many call, an entry stays counted until it is read or evicted (as stats()
        # has always shown), and time.monotonic is read at call time (tests move the clock).
        # Only the event loop touches it, so no lock.
        self._data: LRUCache[str, tuple[float, float]] = LRUCache(maxsize=max_entries)
        self.hits = 0
        self.misses = 0

    async def get_many(self, keys: Sequence[str]) -> list[float | None]:
        now = time.monotonic()
        out: list[float | None] = []
        for key in keys:
            entry = self._data.get(key)  # a hit refreshes the LRU order
            if entry is None or entry[1] < now:
                if entry is not None:
                    del self._data[key]
                out.append(None)
                self.misses += 1
                continue
            out.append(entry[0])
            self.hits += 1
        return out

    async def set_many(self, items: Mapping[str, float], ttl_s: int) -> None:
        expiry = time.monotonic() + ttl_s
        for key, score in items.items():
            self._data[key] = (score, expiry)  # evicts the least recently used when full

    async def delete_prefix(self, prefix: str) -> int:
        doomed = [key for key in self._data if key.startswith(prefix)]
        for key in doomed:
            del self._data[key]
        return len(doomed)

    async def ping(self) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.name,
            "entries": len(self._data),
            "hits": self.hits,
            "misses": self.misses,
            "errors": 0,
            "breaker": "closed",
        }

    async def close(self) -> None:
        self._data.clear()


class NoCache:
    """Caching switched off: every lookup misses, writes vanish."""

    name = "none"

    async def get_many(self, keys: Sequence[str]) -> list[float | None]:
        return [None] * len(keys)

    async def set_many(self, items: Mapping[str, float], ttl_s: int) -> None:
        return None

    async def delete_prefix(self, prefix: str) -> int:
        return 0

    async def ping(self) -> bool:
        return True

    def stats(self) -> dict[str, Any]:
        return {"kind": self.name}

    async def close(self) -> None:
        return None
