"""Settings -> concrete parts. The only module that knows every implementation by name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from es_integration.backends.base import SearchBackend
from es_integration.backends.embedded import EmbeddedBackend
from sidecar.cache.base import ScoreCache
from sidecar.cache.memory import MemoryCache, NoCache
from sidecar.config import Settings
from sidecar.errors import ConfigError
from sidecar.scoring.base import Scorer

if TYPE_CHECKING:
    from sidecar.scoring.images import ImageLoader


def build_backend(settings: Settings) -> SearchBackend:
    engine = settings.engine
    if engine.kind == "embedded":
        from sidecar.demo import CATALOG_PATH

        backend = EmbeddedBackend(engine.search_fields)
        catalog = Path(engine.catalog) if engine.catalog else CATALOG_PATH
        backend.add_jsonl(engine.default_index, catalog, id_field=settings.fields.id or "id")
        return backend
    if engine.kind == "elasticsearch":
        from es_integration.backends.elasticsearch import ElasticsearchBackend

        return ElasticsearchBackend(engine, settings.fields)
    if engine.kind == "opensearch":
        from es_integration.backends.opensearch import OpenSearchBackend

        return OpenSearchBackend(engine, settings.fields)
    raise ConfigError(f"engine.kind {engine.kind!r} is not available in this build")


def build_cache(settings: Settings) -> ScoreCache:
    cache = settings.cache
    if cache.kind == "memory":
        return MemoryCache(cache.max_entries)
    if cache.kind == "none":
        return NoCache()
    from sidecar.cache.redis import RedisCache

    return RedisCache(cache.redis_url, cache.timeout_s, cache.breaker_cooldown_s)


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
        )
    raise ConfigError(f"scorer.kind {scorer.kind!r} is not available in this build")


def build_image_loader(settings: Settings, scorer: Scorer) -> ImageLoader | None:
    """The image loader for a scorer that reads pixels here; None for text-only scorers and
    for the remote scorer (its peer fetches the images it is given by URL)."""
    if not scorer.reads_images or getattr(scorer, "fetches_images_remotely", False):
        return None
    from sidecar.demo import DEMO_DIR
    from sidecar.scoring.images import ImageLoader

    root = settings.images.local_root or DEMO_DIR
    return ImageLoader(
        settings.images, local_root=Path(root), resize_pixels=settings.scorer.max_pixels
    )
