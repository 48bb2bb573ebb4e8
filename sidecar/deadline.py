"""A request's time budget, made once when the request arrives and handed to every stage.

Each stage asks how much is left (`left()`) instead of computing its own timeout, so the engine,
the images, the cache and the model together keep the promise the caller was given
(`timeout_ms`), and a stage that starts late gets less, not its full default.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Deadline:
    at: float  # a time.perf_counter() instant

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.perf_counter() + seconds)

    @classmethod
    def of(cls, value: Deadline | float) -> Deadline:
        """A Deadline, or a bare perf_counter instant, as a Deadline."""
        return value if isinstance(value, Deadline) else cls(value)

    def left(self) -> float:
        """Seconds left, never negative."""
        return max(self.at - time.perf_counter(), 0.0)

    @property
    def expired(self) -> bool:
        return time.perf_counter() >= self.at
