"""A request's time budget, made once when the request arrives and handed to every stage.

Each stage asks how much is left (`left()`) instead of computing its own timeout, so the engine,
the images, the cache and the model together keep the promise the caller was given
(`timeout_ms`), and a stage that starts late gets less, not its full default. A stage's own
deadline is cut from the request's by the methods below (`share`, `less`), never by arithmetic
on instants, and remembers what it was given (`budget`): what `timings` reports as
`*_budget_ms`.

    request = Deadline.since(arrived, 2.0)      # the route, from the request's arrival
    engine = request.share(0.6)                 # the engine: 60% of what is left now
    model = request.less(0.03)                  # the model: what is left, less the answer's 30 ms
    await asyncio.wait_for(stage, engine.outwait_s())

Operator work (warm-up, preview, evaluation) has no caller waiting and makes its own with
`Deadline.after(seconds)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# What a caller waits past the deadline of a stage that keeps it itself (an engine client with
# its own request timeout): that stage's own error, which says what timed out, comes first.
GRACE_S = 0.05
# The least wait handed to asyncio.wait_for: a wait of 0 cancels before the stage has started.
LEAST_WAIT_S = 0.001


@dataclass(frozen=True)
class Deadline:
    at: float  # a time.perf_counter() instant
    budget: float  # the seconds it was given when made

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """`seconds` from now."""
        return cls(time.perf_counter() + seconds, seconds)

    @classmethod
    def since(cls, start: float, seconds: float) -> Deadline:
        """`seconds` from `start`, an earlier perf_counter instant (a request's arrival), so
        what happened since (reading and parsing the body) came out of the same budget."""
        return cls(start + seconds, seconds)

    def left(self) -> float:
        """Seconds left, never negative."""
        return max(self.at - time.perf_counter(), 0.0)

    def share(self, fraction: float) -> Deadline:
        """The deadline of a stage that may use `fraction` of what is left now (the engine's
        `limits.engine_share`, the cache read's and the images' shares)."""
        now = time.perf_counter()
        seconds = max(self.at - now, 0.0) * fraction
        return Deadline(now + seconds, seconds)

    def less(self, reserve: float) -> Deadline:
        """This deadline `reserve` seconds sooner: for a stage that must leave `reserve` to what
        follows it (the model, ahead of the rules and the answer)."""
        return Deadline(self.at - reserve, max(self.left() - reserve, 0.0))

    def wait_s(self) -> float:
        """How long to wait for a stage held to this deadline: what is left, at least
        LEAST_WAIT_S."""
        return max(self.left(), LEAST_WAIT_S)

    def outwait_s(self) -> float:
        """How long to wait for a stage that keeps this deadline itself (it was handed the
        Deadline and times out on its own): what is left plus GRACE_S."""
        return self.left() + GRACE_S

    @property
    def budget_ms(self) -> float:
        """`budget` in milliseconds, as `timings` reports it."""
        return round(self.budget * 1000, 3)
