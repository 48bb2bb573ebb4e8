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
from sidecar.deadline import Deadline
from sidecar.documents import DocumentMemo
from sidecar.pipeline import Pipeline, SearchParams
from sidecar.query import Normalizer
from sidecar.rules.store import RuleStore
from sidecar.scoring.base import Scorer
from sidecar.scoring_service import ImageLoader, ScoringService


@dataclass
class Services:
    settings: Settings
    backend: SearchBackend
    scorer: Scorer
    cache: ScoreCache
    rules: RuleStore
    scoring: ScoringService  # cached scoring: cache budgets, single flight, images, calibration
    images: ImageLoader | None  # for a scorer that reads images here; None otherwise
    documents: DocumentMemo  # the documents of hits seen lately (the pipeline's)
    pipeline: Pipeline
    normalizer: Normalizer
    # what the drop-in forwards unchanged (Elasticsearch/OpenSearch); None on the embedded engine
    proxy: EngineProxy | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    # background encoding of the embedded catalog: state none|running|done, done, total
    warmup: dict[str, Any] = field(default_factory=lambda: {"state": "none"})


def params_for(services: Services, text: str, size: int, window: int | None) -> SearchParams:
    """Search parameters for a plain text query on the default index (operator work: preview,
    warm-up; its Deadline is `operator_deadline`'s or its own)."""
    settings = services.settings
    limits = settings.limits
    return SearchParams(
        index=settings.engine.default_index,
        query=services.normalizer.query(text),
        size=size,
        window=min(window or limits.default_window, limits.max_window),
        instruction=settings.scorer.instruction,
    )


def operator_deadline(services: Services) -> Deadline:
    """The budget of one search of operator work (preview, warm-up), from now: the configured
    maximum, since it wants every hit scored, not a fallback."""
    return Deadline.after(services.settings.limits.max_timeout_ms / 1000)
