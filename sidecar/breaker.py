"""A circuit breaker: after repeated failures a dependency is refused at once for a cooldown,
then one probe call decides whether it is back. The Redis cache (sidecar.cache.redis) and the
vLLM scorer (sidecar.scoring.vllm) each keep one; it lives in the base layer so both can."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Permit:
    """Leave to make one call; its outcome is reported back with it."""

    epoch: int  # the breaker's period (closed, or one open/half-open spell) it was given in
    probe: bool  # the one call a half-open breaker lets through


class CircuitBreaker:
    """closed --`failures` within `window_s`--> open --`cooldown_s`--> half_open --one probe-->
    closed (success) or open (failure).

    Outcomes are reported with the Permit the call got; an outcome from an earlier period (a call
    that started before the breaker opened and ended after) changes nothing.
    """

    def __init__(
        self,
        cooldown_s: float,
        failures: int = 3,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cooldown_s = cooldown_s
        self.failures = failures
        self.window_s = window_s
        self._clock = clock
        self._recent: deque[float] = deque()  # failure times while closed, within the window
        self._open_until: float | None = None  # None: closed
        self._probing = False
        self._epoch = 0

    @property
    def state(self) -> str:
        if self._open_until is None:
            return "closed"
        if self._probing or self._clock() >= self._open_until:
            return "half_open"
        return "open"

    @property
    def probing(self) -> bool:
        return self._probing

    def acquire(self) -> Permit | None:
        """A Permit for one call, or None: open, or half-open with the probe in flight."""
        state = self.state
        if state == "closed":
            return Permit(self._epoch, probe=False)
        if state == "open" or self._probing:
            return None
        self._probing = True
        return Permit(self._epoch, probe=True)

    def success(self, permit: Permit) -> None:
        if permit.epoch == self._epoch and permit.probe:
            self._enter(None)

    def failure(self, permit: Permit) -> bool:
        """Count a failed call; True when this failure opened the breaker."""
        if permit.epoch != self._epoch:
            return False
        now = self._clock()
        if not permit.probe:  # same epoch and not the probe: the breaker is closed
            self._recent.append(now)
            while self._recent and self._recent[0] <= now - self.window_s:
                self._recent.popleft()
            if len(self._recent) < self.failures:
                return False
        self._enter(now + self.cooldown_s)
        return True

    def release(self, permit: Permit) -> None:
        """The call ended without a verdict (cancelled): a probe's turn passes to the next call."""
        if permit.epoch == self._epoch and permit.probe:
            self._probing = False

    def _enter(self, open_until: float | None) -> None:
        self._open_until = open_until
        self._probing = False
        self._recent.clear()
        self._epoch += 1
