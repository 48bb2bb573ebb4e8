"""The long-lived parts of a running sidecar, built once by `sidecar.wiring.build_services`.

Routes receive this object through a typed dependency; nothing else holds global state.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from sidecar.backends.base import SearchBackend
from sidecar.backends.passthrough import EngineProxy
from sidecar.cache.base import ScoreCache
from sidecar.config import Settings
from sidecar.pipeline import Pipeline, SearchParams
from sidecar.query import Normalizer
from sidecar.rules.store import RuleStore
from sidecar.scoring.base import Scorer


@dataclass
class Services:
    settings: Settings
    backend: SearchBackend
    scorer: Scorer
    cache: ScoreCache
    rules: RuleStore
    pipeline: Pipeline
    normalizer: Normalizer
    # what the drop-in forwards unchanged (Elasticsearch/OpenSearch); None on the embedded engine
    proxy: EngineProxy | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    # background encoding of the embedded catalog: state none|running|done, done, total
    warmup: dict[str, Any] = field(default_factory=lambda: {"state": "none"})


def params_for(
    services: Services, text: str, size: int, window: int | None, timeout_s: float | None = None
) -> SearchParams:
    """Search parameters for a plain text query on the default index. Without `timeout_s` the
    deadline is the configured maximum: operator work (preview, warm-up) wants every hit scored,
    not a fallback."""
    settings = services.settings
    limits = settings.limits
    return SearchParams(
        index=settings.engine.default_index,
        query=services.normalizer.query(text),
        size=size,
        window=min(window or limits.default_window, limits.max_window),
        instruction=settings.scorer.instruction,
        timeout_s=timeout_s if timeout_s is not None else limits.max_timeout_ms / 1000,
    )
