"""Composition: settings -> concrete parts -> Services, and their start and stop. The only
module that knows every implementation by name; the app's lifespan and the commands call it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar.backends.base import HoldsVectors, ListsDocuments, SearchBackend
from sidecar.backends.embedded import EmbeddedBackend
from sidecar.backends.passthrough import EngineProxy
from sidecar.cache.base import HoldsBytes, ScoreCache
from sidecar.cache.memory import MemoryCache, NoCache
from sidecar.config import Settings
from sidecar.demo import PRODUCT_TYPES_PATH as DEMO_TYPES_PATH
from sidecar.documents import DocumentMemo, from_hit
from sidecar.errors import ConfigError
from sidecar.pipeline import Pipeline
from sidecar.product_types import TypeMatcher
from sidecar.product_types import load as load_types
from sidecar.query import Normalizer
from sidecar.retrieval import Retriever
from sidecar.rules.store import RuleStore
from sidecar.scoring.base import (
    EmbedsText,
    FetchesImagesRemotely,
    Scorer,
    SharesEmbeddings,
    WarmsDocuments,
    identity_of,
)
from sidecar.scoring.calibration import (
    BUNDLED,
    Calibration,
    bundled_for,
    calibration_state,
    check_identity,
    load_calibration,
)
from sidecar.scoring_service import ScoringService
from sidecar.services import Services

if TYPE_CHECKING:
    from sidecar.scoring.images import ImageLoader

log = logging.getLogger(__name__)

# Scorer kinds whose score identity is final when built (before the model loads), so a
# calibration for another identity is refused before anything loads; the others (lychee and
# cross-encoder: the dtype they really run, and the cross-encoder's head; remote: the peer's
# model; vllm: the served model and root the server reports) are checked as soon as the model is
# loaded.
IDENTITY_AT_BUILD = frozenset({"minilm"})


def build_services(settings: Settings, scorer: Scorer | None = None) -> Services:
    """Every long-lived part for `settings`; `scorer` shares an already built model."""
    path = settings.scorer.calibration
    calibration = load_calibration(path) if isinstance(path, Path) else None  # a bad one: first
    backend = build_backend(settings)
    cache = build_cache(settings)
    if scorer is None:  # a scorer passed in is shared, and belongs to whoever passed it
        scorer = build_scorer(settings)
        _share_embeddings(settings, cache, scorer)
    if path == BUNDLED and _identity_final(settings, scorer):
        calibration = bundled_for(identity_of(scorer))  # None: no file ships for this identity
    rules = RuleStore(settings.rules.path)
    images = build_image_loader(settings, scorer)
    scoring = ScoringService(
        scorer,
        cache,
        images=images,
        calibration=calibration,
        cache_prefix=settings.cache.prefix,
        cache_ttl_s=settings.cache.ttl_s,
    )
    documents = DocumentMemo()
    pipeline = Pipeline(
        backend,
        scoring,
        rules,
        settings.fields,
        engine_share=settings.limits.engine_share,
        strict_languages=settings.scorer.strict_languages,
        documents=documents,
        retriever=Retriever(backend, scorer, settings.hybrid),
        types=build_types(settings),
    )
    if calibration is not None and _identity_final(settings, scorer):
        check_identity(calibration, identity_of(scorer), scorer.model_id)
    return Services(
        settings=settings,
        backend=backend,
        scorer=scorer,
        cache=cache,
        rules=rules,
        scoring=scoring,
        images=images,
        documents=documents,
        pipeline=pipeline,
        normalizer=Normalizer(
            settings.query.casing,
            traditional_to_simplified=settings.query.traditional_to_simplified,
        ),
        proxy=None if backend.name == "embedded" else EngineProxy(settings.engine, backend.name),
    )


def build_types(settings: Settings) -> TypeMatcher | None:
    """The product type matcher, built once from the vocabulary file (ConfigError if it does not
    read); None when product types are off."""
    if not settings.product_types.enabled:
        return None
    path = settings.product_types.path or DEMO_TYPES_PATH
    try:
        return load_types(path)
    except ValueError as exc:
        raise ConfigError(f"product_types.path: {exc}") from exc


async def close_services(services: Services, *, close_scorer: bool = True) -> None:
    """Stop background tasks, let late cache writes land, close every client. A scorer shared
    by the caller (`close_scorer=False`) stays open."""
    for task in services.tasks:
        task.cancel()
    await asyncio.gather(*services.tasks, return_exceptions=True)
    await services.scoring.drain()
    if close_scorer:
        await services.scorer.close()
    await services.cache.close()
    await services.backend.close()
    if services.proxy is not None:
        await services.proxy.close()
    if services.images is not None:
        await services.images.close()


@asynccontextmanager
async def loaded_services(
    settings: Settings, scorer: Scorer | None = None
) -> AsyncIterator[Services]:
    """The parts with the model loaded (ConfigError when it cannot load), closed afterwards:
    for commands and evaluation, which need every hit scored. A `scorer` passed in is shared
    (one model and its embedding cache over several runs) and stays open."""
    services = build_services(settings, scorer)
    try:
        if not services.scorer.state.ready:
            await services.scorer.load()
        if not services.scorer.state.ready:
            raise ConfigError(f"model did not load: {services.scorer.state.reason}")
        check_calibration(services)
        yield services
    finally:
        await close_services(services, close_scorer=scorer is None)


async def load_model(services: Services) -> None:
    """Load the model; then a calibration fitted for another score identity is refused
    (ConfigError: an app that waits for its model does not start; otherwise it is logged and
    every request says so, since ScoringService.score serves no mismatched calibration)."""
    if not services.scorer.state.ready:
        await services.scorer.load()
    if services.scorer.state.ready:
        try:
            check_calibration(services)
        except ConfigError as exc:
            log.error("%s", exc.message)
            raise


def _share_embeddings(settings: Settings, cache: ScoreCache, scorer: Scorer) -> None:
    """A shared cache shares the bi-encoder's document vectors (part of its score identity)."""
    if (
        settings.cache.share_embeddings
        and isinstance(cache, HoldsBytes)
        and isinstance(scorer, SharesEmbeddings)
    ):
        scorer.share_embeddings(cache, settings.cache.prefix, settings.cache.ttl_s)


def calibration_status(services: Services) -> dict[str, Any]:
    """Whether this sidecar's scores are calibrated, and why not (/readyz)."""
    scorer = services.scorer
    final = _identity_final(services.settings, scorer)
    return calibration_state(
        services.settings.scorer.calibration,
        services.scoring.calibration,
        identity_of(scorer) if final else None,
        scorer.model_id,
    )


async def configured_calibration(settings: Settings) -> dict[str, Any]:
    """`calibration_status` of the sidecar `settings` describe, without loading a model or
    reaching an engine (`rules check`): the scorer and cache are built, then closed. A file
    for another identity is said so, not raised (ConfigError for an unreadable one)."""
    setting = settings.scorer.calibration
    scorer, cache = build_scorer(settings), build_cache(settings)
    try:
        _share_embeddings(settings, cache, scorer)
        final = _identity_final(settings, scorer)
        identity = identity_of(scorer) if final else None
        calibration = None
        if setting == BUNDLED:
            calibration = bundled_for(identity) if identity is not None else None
        elif isinstance(setting, Path):
            calibration = load_calibration(setting)
            if identity is not None and calibration.score_identity != identity:
                calibration = None
        return calibration_state(setting, calibration, identity, scorer.model_id)
    finally:
        await cache.close()
        await scorer.close()


def _identity_final(settings: Settings, scorer: Scorer) -> bool:
    return scorer.state.ready or settings.scorer.kind in IDENTITY_AT_BUILD


def check_calibration(services: Services) -> Calibration | None:
    """The scoring service's calibration, or ConfigError when the loaded scorer's score
    identity is not the one it was fitted for (both named). With `bundled`, a scorer whose
    identity is known only once loaded gets the shipped calibration for it now, if any."""
    if services.settings.scorer.calibration == BUNDLED and services.scoring.calibration is None:
        services.scoring.calibration = bundled_for(identity_of(services.scorer))
    calibration = services.scoring.calibration
    if calibration is not None:
        check_identity(calibration, identity_of(services.scorer), services.scorer.model_id)
    return calibration


async def warm_catalog(services: Services, load: asyncio.Task[None]) -> None:
    """Embedded mode knows its whole catalog: encode it once in the background so that the
    first searches are warm; /readyz shows the progress. Engines in production are warmed with
    `rerank-sidecar warm`."""
    await load
    scorer, backend = services.scorer, services.backend
    if not isinstance(scorer, WarmsDocuments) or not isinstance(backend, ListsDocuments):
        return
    if not scorer.state.ready:
        return
    documents = [from_hit(hit, services.settings.fields) for hit in backend.all_documents()]
    progress = services.warmup
    progress.update(state="running", done=0, total=len(documents))

    def report(done: int) -> None:
        progress["done"] = done

    sharer = scorer if isinstance(scorer, SharesEmbeddings) else None
    unshared = await sharer.read_shared(documents) if sharer else []  # what replicas encoded
    await asyncio.to_thread(scorer.warm_documents, documents, progress=report)
    if sharer is not None:
        sharer.share(unshared)
    await give_vectors(services)
    progress["state"] = "done"
    log.info("catalog warm-up done", extra={"documents": len(documents)})


async def give_vectors(services: Services, index: str | None = None) -> None:
    """The embedded engine's vector leg: each index's (or `index`'s) documents' vectors from a
    scorer that makes them (the catalog warm-up has just encoded them, so this reads them from
    its cache). Nothing for an engine that holds its own vectors or a scorer without them."""
    scorer, backend = services.scorer, services.backend
    if not isinstance(scorer, EmbedsText) or not isinstance(backend, EmbeddedBackend):
        return
    if not isinstance(backend, HoldsVectors) or not scorer.state.ready:
        return
    fields = services.settings.fields
    for name in [index] if index else list(backend.indexes()):
        documents = [from_hit(hit, fields) for hit in backend.index_hits(name)]
        vectors = await asyncio.to_thread(scorer.document_vectors, documents)
        backend.set_vectors(name, vectors)


def build_backend(settings: Settings) -> SearchBackend:
    engine = settings.engine
    if engine.kind == "embedded":
        from sidecar.demo import CATALOG_PATH

        backend = EmbeddedBackend(engine.search_fields)
        catalog = Path(engine.catalog) if engine.catalog else CATALOG_PATH
        backend.add_jsonl(engine.default_index, catalog, id_field=settings.fields.id or "id")
        return backend
    if engine.kind == "elasticsearch":
        from sidecar.backends.elasticsearch import ElasticsearchBackend

        return ElasticsearchBackend(engine, settings.fields)
    if engine.kind == "opensearch":
        from sidecar.backends.opensearch import OpenSearchBackend

        return OpenSearchBackend(engine, settings.fields)
    raise ConfigError(f"engine.kind {engine.kind!r} is not available in this build")


def build_cache(settings: Settings) -> ScoreCache:
    cache = settings.cache
    if cache.kind == "memory":
        return MemoryCache(cache.max_entries)
    if cache.kind == "none":
        return NoCache()
    from sidecar.cache.redis import RedisCache

    return RedisCache(
        cache.redis_url,
        cache.timeout_s,
        cache.breaker_cooldown_s,
        cache.breaker_failures,
        cache.breaker_window_s,
    )


def build_scorer(settings: Settings) -> Scorer:
    scorer = settings.scorer
    if scorer.kind == "minilm":
        from sidecar.scoring.minilm import MiniLMScorer

        return MiniLMScorer(
            scorer.model_path,
            scorer.max_doc_chars,
            scorer.batch_size,
            micro_batching=scorer.micro_batching,
            max_wait_ms=scorer.max_wait_ms,
            max_queue=scorer.max_queue,
            languages=scorer.languages,
        )
    if scorer.kind == "lychee":
        from sidecar.scoring.lychee import LycheeScorer

        if not scorer.model_path:
            raise ConfigError(
                "scorer.model_path is required for scorer.kind lychee "
                "(a local Lychee-rerank-mm folder, or vec-ai/lychee-rerank-mm with network)"
            )
        return LycheeScorer(
            scorer.model_path,
            max_doc_chars=scorer.max_doc_chars,
            device=scorer.device,
            min_pixels=scorer.min_pixels,
            max_pixels=scorer.max_pixels,
            batch_size=scorer.batch_size,
            max_batch_tokens=scorer.max_batch_tokens,
            max_wait_ms=scorer.max_wait_ms,
            max_queue=scorer.max_queue,
            attn_implementation=scorer.attn_implementation,
            languages=scorer.languages,
        )
    if scorer.kind == "cross-encoder":
        from sidecar.scoring.cross_encoder import CrossEncoderScorer

        if not scorer.model_path:
            raise ConfigError(
                "scorer.model_path is required for scorer.kind cross-encoder "
                "(a local folder in sentence-transformers' CrossEncoder layout)"
            )
        return CrossEncoderScorer(
            scorer.model_path,
            max_length=scorer.max_length,
            max_doc_chars=scorer.max_doc_chars,
            device=scorer.device,
            batch_size=scorer.batch_size,
            max_batch_tokens=scorer.max_batch_tokens,
            micro_batching=scorer.micro_batching,
            max_wait_ms=scorer.max_wait_ms,
            max_queue=scorer.max_queue,
            languages=scorer.languages,
        )
    if scorer.kind == "vllm":
        from sidecar.scoring.vllm import VllmScorer

        if not scorer.url:
            raise ConfigError(
                "scorer.url is required for scorer.kind vllm (the vLLM server's base URL)"
            )
        return VllmScorer(
            scorer.url,
            model=scorer.model,
            family=scorer.family,
            call_size=scorer.call_size,
            concurrency=scorer.concurrency,
            timeout_s=scorer.timeout_s,
            max_doc_chars=scorer.max_doc_chars,
            max_pixels=scorer.max_pixels,
            breaker_failures=scorer.breaker_failures,
            breaker_cooldown_s=scorer.breaker_cooldown_s,
            languages=scorer.languages,
        )
    if scorer.kind == "remote":
        from sidecar.scoring.remote import RemoteScorer

        if not scorer.remote_url:
            raise ConfigError("scorer.remote_url is required for scorer.kind remote")
        return RemoteScorer(
            scorer.remote_url,
            model=scorer.remote_model,
            timeout_s=scorer.remote_timeout_s,
            max_doc_chars=scorer.max_doc_chars,
            max_documents=scorer.remote_max_documents,
            languages=scorer.languages,
        )
    raise ConfigError(f"scorer.kind {scorer.kind!r} is not available in this build")


def build_image_loader(settings: Settings, scorer: Scorer) -> ImageLoader | None:
    """The image loader for a scorer that reads pixels here; None for text-only scorers and
    for the remote scorer (its peer fetches the images it is given by URL)."""
    if not scorer.reads_images or isinstance(scorer, FetchesImagesRemotely):
        return None
    from sidecar.demo import DEMO_DIR
    from sidecar.scoring.images import ImageLoader

    root = settings.images.local_root or DEMO_DIR
    return ImageLoader(
        settings.images, local_root=Path(root), resize_pixels=settings.scorer.max_pixels
    )
