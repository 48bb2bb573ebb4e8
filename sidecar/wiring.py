"""Settings -> concrete parts. The only module that knows every implementation by name."""

from __future__ import annotations

from pathlib import Path

from es_integration.backends.base import SearchBackend
from es_integration.backends.embedded import EmbeddedBackend
from sidecar.cache.base import ScoreCache
from sidecar.cache.memory import MemoryCache, NoCache
from sidecar.config import Settings
from sidecar.errors import ConfigError
from sidecar.scoring.base import Scorer


def build_backend(settings: Settings) -> SearchBackend:
    engine = settings.engine
    if engine.kind == "embedded":
        from sidecar.demo import CATALOG_PATH

        backend = EmbeddedBackend(engine.search_fields)
        catalog = Path(engine.catalog) if engine.catalog else CATALOG_PATH
        backend.add_jsonl(engine.default_index, catalog, id_field=settings.fields.id or "id")
        return backend
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

        return MiniLMScorer(scorer.model_path, scorer.max_doc_chars, scorer.batch_size)
    raise ConfigError(f"scorer.kind {scorer.kind!r} is not available in this build")
