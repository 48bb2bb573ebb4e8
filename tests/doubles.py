"""Test doubles for states a real model is in only briefly (still loading, failed to load).

Everything else in the suite uses the real MiniLM scorer; these exist because "the model is
still loading" cannot be held still long enough to test against a real load.
"""

from __future__ import annotations

from typing import Any

from sidecar.scoring.base import ModelState


class NeverReadyScorer:
    """Stays in `status` (loading by default) forever; scoring it is a test bug."""

    reads_images = False

    def __init__(
        self,
        model_id: str = "never-ready",
        status: str = "loading",
        reason: str = "",
        progress: float = 0.3,
        score_identity: str | None = None,
    ) -> None:
        self.model_id = model_id
        # a stand-in for a real model that is still loading names that model's score identity
        self.score_identity = score_identity or model_id
        self.state = ModelState(status=status, reason=reason, progress=progress)

    async def load(self) -> None:
        return None

    async def score(self, *args: Any, **kwargs: Any) -> list[float]:
        raise AssertionError("a scorer that is not ready must not be asked to score")

    async def close(self) -> None:
        return None


class OverloadedScorer(NeverReadyScorer):
    """Ready, but its queue is always full: the answer a saturated micro-batcher gives."""

    def __init__(self) -> None:
        super().__init__(model_id="overloaded", status="ready", progress=1.0)

    async def score(self, *args: Any, **kwargs: Any) -> list[float]:
        from sidecar.errors import Overloaded

        raise Overloaded("scoring queue is full (4096 pairs waiting)")
