"""Single flight: concurrent callers asking for the same key share one running task.

Two shoppers sending the same query at the same moment both miss the cache; without this both
would pay for the model. The first caller starts the work, later callers with the same key get
the same task, and the key is forgotten once the task ends (success or error), so the next
caller after that starts afresh (and normally finds the cache warm).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Task[T]] = {}
        self.shared = 0  # how many callers joined a task someone else started

    def task(self, key: Hashable, start: Callable[[], Coroutine[Any, Any, T]]) -> asyncio.Task[T]:
        """The running task for `key`, started with `start()` when there is none. Callers
        should await it through asyncio.shield if they may be cancelled, so that one caller's
        timeout does not cancel the work for the others."""
        running = self._running.get(key)
        if running is not None and not running.done():
            self.shared += 1
            return running
        task = asyncio.create_task(start())
        self._running[key] = task
        task.add_done_callback(lambda done: self._forget(key, done))
        return task

    def _forget(self, key: Hashable, done: asyncio.Task[T]) -> None:
        if self._running.get(key) is done:
            del self._running[key]

    def __len__(self) -> int:
        return len(self._running)
