"""Micro-batching under a scorer: pairs from concurrent requests share forward passes.

Each (query, document) pair waits on its own future. One worker per event loop takes what is
queued (after a short wait for company), sorts it by length so padding stays small, cuts it into
batches under a pair budget and a token budget, and runs the forward pass off the event loop.
Every future the worker took is resolved: with its score, with the batch's exception, or left
alone when its caller has gone (cancelled items are skipped before the forward pass). Out of
memory halves the batch and retries; a bounded queue turns overload into `Overloaded`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from sidecar.errors import Overloaded

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Item(Generic[T]):
    payload: T
    tokens: int
    future: asyncio.Future[float]
    queued_at: float = field(default_factory=time.monotonic)


class BatchObserver(Protocol):
    """Who hears about batches (the metrics layer hands one in; no prometheus types here)."""

    def batch(self, size: int, queue_wait_s: float) -> None: ...

    def queue_depth(self, depth: int) -> None: ...


@dataclass
class BatchStats:
    batches: int = 0
    pairs: int = 0
    oom_retries: int = 0


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA out-of-memory, by type when torch has it, else by message."""
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return "out of memory" in str(exc).lower()


class MicroBatcher(Generic[T]):
    """Collects pairs into batches for `forward(payloads) -> scores` (a blocking function)."""

    def __init__(
        self,
        forward: Callable[[list[T]], list[float]],
        *,
        max_batch: int = 32,
        max_tokens: int = 16_384,
        max_wait_s: float = 0.002,
        max_queue: int = 4096,
        on_oom: Callable[[], None] | None = None,
    ) -> None:
        self.forward = forward
        self.max_batch = max_batch
        self.max_tokens = max_tokens
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.on_oom = on_oom
        self.stats = BatchStats()
        self._observer: BatchObserver | None = None
        self._queue: deque[_Item[T]] = deque()
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._forward_lock = threading.Lock()  # one forward at a time, whatever the loop

    async def submit(self, payloads: Sequence[T], tokens: Sequence[int]) -> list[float]:
        """Scores for `payloads` (in order), or the exception their batch raised."""
        if not payloads:
            return []
        self._ensure_worker()
        if len(self._queue) + len(payloads) > self.max_queue:
            raise Overloaded(
                f"scoring queue is full ({len(self._queue)} pairs waiting, "
                f"at most {self.max_queue}); retry later"
            )
        loop = asyncio.get_running_loop()
        items = [_Item(p, t, loop.create_future()) for p, t in zip(payloads, tokens, strict=True)]
        self._queue.extend(items)
        self._report_depth()
        assert self._wake is not None
        self._wake.set()
        try:
            return list(await asyncio.gather(*(i.future for i in items)))
        finally:
            for item in items:  # a caller that gives up takes its pairs out of the next batch
                item.future.cancel()

    def observe_with(self, observer: BatchObserver) -> None:
        """Report batch sizes, queue wait and queue depth to `observer` from now on."""
        self._observer = observer

    @property
    def depth(self) -> int:
        return len(self._queue)

    def _report_depth(self) -> None:
        if self._observer is not None:
            self._observer.queue_depth(len(self._queue))

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            # A scorer may be shared by apps on different loops (tests, benches): each loop
            # gets its own queue and worker.
            self._loop = loop
            self._queue = deque()
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._run(), name="micro-batcher")

    async def close(self) -> None:
        if self._worker is not None and self._loop is asyncio.get_running_loop():
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for item in self._queue:
            item.future.cancel()
        self._queue.clear()
        self._worker = None

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._queue:
                continue
            if len(self._queue) < self.max_batch and self.max_wait_s > 0:
                await asyncio.sleep(self.max_wait_s)  # let concurrent requests join
            taken = [i for i in self._drain() if not i.future.done()]
            self._report_depth()
            for batch in self.plan(taken):
                await self._run_batch(batch)
            if self._queue:
                self._wake.set()

    def _drain(self) -> list[_Item[T]]:
        # Take at most a few batches' worth so a flood cannot starve later arrivals' sorting.
        limit = self.max_batch * 4
        taken: list[_Item[T]] = []
        while self._queue and len(taken) < limit:
            taken.append(self._queue.popleft())
        return taken

    def plan(self, items: list[_Item[T]]) -> list[list[_Item[T]]]:
        """Length-sorted batches under the pair and token budgets (token cost of a padded batch
        = size x its longest item)."""
        ordered = sorted(items, key=lambda i: i.tokens)
        batches: list[list[_Item[T]]] = []
        current: list[_Item[T]] = []
        for item in ordered:
            longest = max(item.tokens, current[-1].tokens if current else 0)
            if current and (
                len(current) >= self.max_batch or longest * (len(current) + 1) > self.max_tokens
            ):
                batches.append(current)
                current = []
            current.append(item)
        if current:
            batches.append(current)
        return batches

    async def _run_batch(self, batch: list[_Item[T]]) -> None:
        live = [i for i in batch if not i.future.done()]
        if not live:
            return
        try:
            scores = await asyncio.to_thread(self._forward_halving, [i.payload for i in live])
        except asyncio.CancelledError:
            for item in live:
                item.future.cancel()
            raise
        except Exception as exc:  # every waiter learns why its batch failed
            log.warning("scoring batch of %d failed: %s", len(live), exc)
            for item in live:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        self.stats.batches += 1
        self.stats.pairs += len(live)
        if self._observer is not None:
            waited = time.monotonic() - min(i.queued_at for i in live)
            self._observer.batch(len(live), waited)
        for item, score in zip(live, scores, strict=True):
            if not item.future.done():
                item.future.set_result(score)

    def _forward_halving(self, payloads: list[T]) -> list[float]:
        """forward(payloads); on out-of-memory release cached memory and retry in halves."""
        try:
            with self._forward_lock:
                return self.forward(payloads)
        except Exception as exc:
            if not is_out_of_memory(exc) or len(payloads) == 1:
                raise
            self.stats.oom_retries += 1
            log.warning("out of memory on a batch of %d pairs; retrying in halves", len(payloads))
            if self.on_oom is not None:
                self.on_oom()
        half = len(payloads) // 2
        return self._forward_halving(payloads[:half]) + self._forward_halving(payloads[half:])
