"""Fill the shared document embeddings ahead of traffic (`rerank-sidecar index --embed`): every
product of a catalog encoded once by the CPU bi-encoder and written to Redis under its score
identity, so the first replica to meet a product reads it instead of encoding it. What is in
Redis already is read, not encoded again; a second run costs one read per product.

Unlike a serving sidecar, for which the store is best effort, this work is only worth what the
store kept: the store must answer before anything is encoded, and any write it refuses fails the
run (StoreUnwritable, naming the store), so an operator is never told embeddings are shared when
they are not.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidecar.backends.base import Hit
from sidecar.backends.indexing import Vectors
from sidecar.cache.base import HoldsBytes
from sidecar.config import Settings
from sidecar.documents import Document, from_hit
from sidecar.errors import ConfigError
from sidecar.operations.shared_store import StoreUnwritable, check_reachable, store_name
from sidecar.scoring.base import EmbedsText, Scorer, SharesEmbeddings, WarmsDocuments
from sidecar.wiring import build_cache, build_scorer

CHUNK = 256  # products per read, encode and write
WHAT = "shared embeddings"  # what the messages say cannot be written


@dataclass
class EmbedReport:
    total: int = 0
    encoded: int = 0  # new here
    found: int = 0  # already shared by someone
    written: int = 0  # stored in the shared cache by this run
    store: str = ""  # where (the cache URL without its password)
    seconds: float = 0.0


def refusal(settings: Settings) -> str | None:
    """Why these settings cannot share embeddings at all (None: they can). Checked before any
    work, so `index --embed` refuses before it loads the index."""
    cache = settings.cache
    if cache.kind != "redis":
        return (
            f"--embed writes embeddings every replica shares, and cache.kind is {cache.kind!r}: "
            "nothing would keep them (give cache.kind: redis)"
        )
    if not cache.share_embeddings:
        return (
            "--embed writes shared embeddings, and cache.share_embeddings is false: no replica "
            "would read them (set it true)"
        )
    if settings.scorer.kind != "minilm":
        return (
            f"--embed needs a scorer whose document side can be shared (minilm); "
            f"scorer.kind is {settings.scorer.kind!r}"
        )
    return None


async def check_target(settings: Settings) -> None:
    """Raise ConfigError when the settings cannot share embeddings, StoreUnwritable when the
    store does not answer; build nothing else."""
    problem = refusal(settings)
    if problem is not None:
        raise ConfigError(problem)
    cache = build_cache(settings)
    try:
        await check_reachable(cache, settings, WHAT)
    finally:
        await cache.close()


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
    """Encode and share every product of `catalog`. Raises ConfigError (settings that cannot
    share), StoreUnwritable (the store refused writes: at the probe, or any of the run's)."""
    problem = refusal(settings)
    if problem is not None:
        raise ConfigError(problem)
    cache = build_cache(settings)
    scorer = build_scorer(settings)
    try:
        if not isinstance(cache, HoldsBytes):
            raise ConfigError(f"--embed needs a cache that holds bytes; {cache.name} does not")
        if not isinstance(scorer, SharesEmbeddings) or not isinstance(scorer, WarmsDocuments):
            raise ConfigError(
                f"--embed needs a scorer whose document side can be shared (minilm); "
                f"scorer.kind is {settings.scorer.kind!r}"
            )
        await check_reachable(cache, settings, WHAT)  # before minutes of encoding
        await scorer.load()
        if not scorer.state.ready:
            raise ConfigError(f"the scorer did not load: {scorer.state.reason}")
        scorer.share_embeddings(cache, settings.cache.prefix, settings.cache.ttl_s)
        documents = list(catalog_documents(catalog, settings))
        report = EmbedReport(total=len(documents), store=store_name(settings))
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
        stats = scorer.embedding_stats()
        report.written = int(stats.get("written", 0))
        failed = int(stats.get("failed", 0))
        if failed:
            raise StoreUnwritable(
                f"{report.store}: cannot write {WHAT}: {failed} of {report.total - report.found} "
                f"were not stored ({scorer.share_failure()}); run it again once the store "
                "takes writes"
            )
        return report
    finally:
        await cache.close()


async def engine_vectors(settings: Settings, engine: str) -> tuple[Vectors, Scorer]:
    """What `index --vectors` writes beside each product: its vector from the configured
    scorer (loaded here; the caller closes it), through the same field map the serving
    sidecar reads, so the engine's vector and the scorer's are one. ConfigError when the
    scorer makes no vectors or not of `hybrid.dims` dimensions."""
    scorer = build_scorer(settings)
    if not isinstance(scorer, EmbedsText):
        raise ConfigError(
            f"--vectors needs a scorer that makes vectors (minilm); scorer.kind is "
            f"{settings.scorer.kind!r}"
        )
    await scorer.load()
    if not scorer.state.ready:
        raise ConfigError(f"the scorer did not load: {scorer.state.reason}")
    hybrid = settings.hybrid
    if scorer.dimensions != hybrid.dims:
        raise ConfigError(
            f"the scorer makes vectors of {scorer.dimensions} dimensions and "
            f"hybrid.dims is {hybrid.dims}"
        )
    fields, id_field = settings.fields, settings.fields.id or "id"
    embedder = scorer

    def embed(docs: Sequence[Mapping[str, Any]]) -> list[list[float]]:
        hits = [Hit(id=str(doc.get(id_field, "")), score=0.0, source=doc) for doc in docs]
        return embedder.document_vectors([from_hit(hit, fields) for hit in hits])

    return Vectors(engine, hybrid.field, hybrid.dims, embed), scorer
