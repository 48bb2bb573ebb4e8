"""Fill the shared document embeddings ahead of traffic (`rerank-sidecar index --embed`): every
product of a catalog encoded once by the CPU bi-encoder and written to Redis under its score
identity, so the first replica to meet a product reads it instead of encoding it. What is in
Redis already is read, not encoded again; a second run costs one read per product."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sidecar.backends.base import Hit
from sidecar.cache.base import HoldsBytes
from sidecar.config import Settings
from sidecar.documents import Document, from_hit
from sidecar.errors import ConfigError
from sidecar.scoring.base import SharesEmbeddings, WarmsDocuments
from sidecar.wiring import build_cache, build_scorer

CHUNK = 256  # products per read, encode and write


@dataclass
class EmbedReport:
    total: int = 0
    encoded: int = 0  # new here
    found: int = 0  # already shared by someone
    seconds: float = 0.0


def catalog_documents(catalog: Path, settings: Settings) -> Iterator[Document]:
    """The catalog's products as the pipeline builds them (the same field map, so the same
    content hash and the same shared key)."""
    id_field = settings.fields.id or "id"
    with catalog.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                source = json.loads(line)
                yield from_hit(
                    Hit(id=str(source.get(id_field, "")), score=0.0, source=source), settings.fields
                )


async def embed_catalog(
    settings: Settings, catalog: Path, progress: Callable[[int, int], None] | None = None
) -> EmbedReport:
    cache = build_cache(settings)
    scorer = build_scorer(settings)
    try:
        if not isinstance(cache, HoldsBytes) or not settings.cache.share_embeddings:
            raise ConfigError(
                f"--embed needs a shared cache: cache.kind is {settings.cache.kind!r} "
                "(give cache.kind: redis with cache.share_embeddings: true)"
            )
        if not isinstance(scorer, SharesEmbeddings) or not isinstance(scorer, WarmsDocuments):
            raise ConfigError(
                f"--embed needs a scorer whose document side can be shared (minilm); "
                f"scorer.kind is {settings.scorer.kind!r}"
            )
        await scorer.load()
        if not scorer.state.ready:
            raise ConfigError(f"the scorer did not load: {scorer.state.reason}")
        scorer.share_embeddings(cache, settings.cache.prefix, settings.cache.ttl_s)
        documents = list(catalog_documents(catalog, settings))
        report = EmbedReport(total=len(documents))
        started = time.perf_counter()
        for start in range(0, len(documents), CHUNK):
            chunk = documents[start : start + CHUNK]
            unshared = await scorer.read_shared(chunk)
            report.found += len(chunk) - len(unshared)
            report.encoded += await asyncio.to_thread(scorer.warm_documents, chunk)
            scorer.share(unshared)
            if progress is not None:
                progress(start + len(chunk), len(documents))
        await scorer.close()  # waits for the last writes
        report.seconds = time.perf_counter() - started
        return report
    finally:
        await cache.close()
