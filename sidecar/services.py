"""The long-lived parts of a running sidecar, built once by the app's lifespan.

Routes receive this object through a typed dependency; nothing else holds global state.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from es_integration.backends.base import SearchBackend
from sidecar.cache.base import ScoreCache
from sidecar.config import Settings
from sidecar.pipeline import Pipeline
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
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    # background encoding of the embedded catalog: state none|running|done, done, total
    warmup: dict[str, Any] = field(default_factory=lambda: {"state": "none"})
