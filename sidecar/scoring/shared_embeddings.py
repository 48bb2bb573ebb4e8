"""Document embeddings shared by every replica through the cache backend (Redis).

A bi-encoder's document embedding depends on the document alone, so one replica's encoding is
good for all: a new pod, a restart or a replica the autoscaler adds reads what the others
encoded instead of paying ~15 ms per product again. Embeddings are stored as float16 (768 bytes
for MiniLM's 384 dimensions) under the scorer's score identity and the document's content hash,
read in one round trip per request (the scorer's in-process LRU in front), written after
encoding in the background. Every replica that shares them also rounds its own fresh
embeddings through float16, so all replicas score with the same vectors.

The store is best effort: Redis down or slow means encoding locally, never a failed request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sidecar.cache.base import CacheUnavailable, HoldsBytes

log = logging.getLogger(__name__)

DTYPE = np.float16


def rounded(vector: np.ndarray) -> np.ndarray:
    """A vector as every replica sees it once shared: through float16 and back."""
    return vector.astype(DTYPE).astype(np.float32)


class SharedEmbeddings:
    def __init__(
        self,
        store: HoldsBytes,
        prefix: str,
        identity: str,
        dimensions: int,
        ttl_s: int,
    ) -> None:
        self.store = store
        # the identity of the scorer's weights and limits: a new model never reads old vectors
        self.prefix = f"{prefix}emb:{hashlib.sha256(identity.encode()).hexdigest()[:16]}:"
        self.dimensions = dimensions
        self.ttl_s = ttl_s
        self.read = 0  # embeddings found in the store
        self.written = 0
        self.failed = 0  # embeddings a write did not store (counted, so a filler can tell)
        # why the first failed write failed: the cause (later ones may only say that the
        # cache's circuit breaker is open)
        self.first_failure: str | None = None
        self._writes: set[asyncio.Task[None]] = set()

    def key(self, doc_key: str) -> str:
        return self.prefix + doc_key

    async def fetch(self, doc_keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored embeddings among `doc_keys`; the store failing is an empty answer."""
        if not doc_keys:
            return {}
        try:
            values = await self.store.get_bytes([self.key(k) for k in doc_keys])
        except CacheUnavailable as exc:
            log.info("shared embeddings unavailable: %s", exc)
            return {}
        found: dict[str, np.ndarray] = {}
        for key, value in zip(doc_keys, values, strict=True):
            if value is None or len(value) != self.dimensions * 2:  # missing, or not ours
                continue
            found[key] = np.frombuffer(value, dtype=DTYPE).astype(np.float32)
        self.read += len(found)
        return found

    async def put(self, vectors: Mapping[str, np.ndarray]) -> None:
        if not vectors:
            return
        items = {self.key(k): v.astype(DTYPE).tobytes() for k, v in vectors.items()}
        try:
            await self.store.set_bytes(items, self.ttl_s)
            self.written += len(items)
        except CacheUnavailable as exc:
            self.failed += len(items)
            self.first_failure = self.first_failure or str(exc)
            log.info("shared embeddings not written: %s", exc)

    def put_later(self, vectors: Mapping[str, np.ndarray]) -> None:
        """Write without holding the request that encoded them."""
        if not vectors:
            return
        task = asyncio.create_task(self.put(dict(vectors)))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def drain(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    def stats(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "written": self.written,
            "failed": self.failed,
            "dtype": "float16",
        }
