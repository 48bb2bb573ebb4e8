"""Micro-batching under a scorer: work from concurrent requests shares forward passes.

Each item (a cross-encoder's (query, document) pair, or a bi-encoder's whole request) waits on
its own future. One worker per event loop takes what is queued, sorts it by length so padding
stays small, cuts it into batches under an item budget and a token budget, and runs the forward
pass on the batcher's own thread (one forward at a time, never queued behind other work of the
default executor). Every future the worker took is resolved: with its result, with its own
error, or left alone when its caller has gone (cancelled items are skipped before the forward
pass).

Failures stay with the items that caused them: a forward pass may give an exception in place of
one item's result (that item fails, the others get theirs); a batch whose forward pass raises is
split by caller and each half run again, so one caller's poisoned input does not fail the
callers batched with it, and a model that fails for everyone still fails every waiter. Out of
memory halves the batch and retries. A bounded queue (counted in pairs) turns overload into
`Overloaded`.

Waiting for company: with `adaptive_wait`, the worker waits `max_wait_s` for more callers only
after a batch that held more than one, so a lone request on an idle model goes at once, and under
concurrency the queue fills while the model is busy anyway.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from sidecar.errors import Overloaded

log = logging.getLogger(__name__)

T = TypeVar("T")  # what one item carries into the forward pass
R = TypeVar("R")  # what the forward pass gives back for one item


@dataclass(eq=False)
class _Item(Generic[T, R]):
    payload: T
    tokens: int
    pairs: int  # what the item counts for in the queue bound and the metrics
    caller: int  # the submit() call it came from
    future: asyncio.Future[R]
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
    isolations: int = 0  # failed batches split by caller to keep one failure from the others


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA out-of-memory, by type when torch has it, else by message."""
    try:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return "out of memory" in str(exc).lower()


class MicroBatcher(Generic[T, R]):
    """Collects items into batches for `forward(payloads) -> one result per payload` (a blocking
    function; a result may be an exception, which fails that item alone)."""

    def __init__(
        self,
        forward: Callable[[list[T]], Sequence[R | BaseException]],
        *,
        max_batch: int = 32,
        max_tokens: int = 16_384,
        max_wait_s: float = 0.002,
        max_queue: int = 4096,
        on_oom: Callable[[], None] | None = None,
        adaptive_wait: bool = False,
    ) -> None:
        self.forward = forward
        self.max_batch = max_batch
        self.max_tokens = max_tokens
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.on_oom = on_oom
        self.adaptive_wait = adaptive_wait
        self.stats = BatchStats()
        self._observer: BatchObserver | None = None
        self._queue: deque[_Item[T, R]] = deque()
        self._queued_pairs = 0
        self._company = False  # the last batch held more than one caller
        self._callers = itertools.count()
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._forward_lock = threading.Lock()  # one forward at a time, whatever the loop

    async def submit(
        self,
        payloads: Sequence[T],
        tokens: Sequence[int],
        pairs: Sequence[int] | None = None,
    ) -> list[R]:
        """Results for `payloads` (in order), or the exception of the first that failed.
        `pairs`: what each payload counts for in the queue bound (1 each when not given)."""
        if not payloads:
            return []
        self._ensure_worker()
        weights = list(pairs) if pairs is not None else [1] * len(payloads)
        if self._queued_pairs + sum(weights) > self.max_queue:
            raise Overloaded(
                f"scoring queue is full ({self._queued_pairs} pairs waiting, "
                f"at most {self.max_queue}); retry later"
            )
        loop = asyncio.get_running_loop()
        caller = next(self._callers)
        items = [
            _Item(p, t, w, caller, loop.create_future())
            for p, t, w in zip(payloads, tokens, weights, strict=True)
        ]
        self._queue.extend(items)
        self._queued_pairs += sum(weights)
        self._report_depth()
        assert self._wake is not None
        self._wake.set()
        try:
            if len(items) == 1:
                return [await items[0].future]
            return list(await asyncio.gather(*(i.future for i in items)))
        finally:
            for item in items:  # a caller that gives up takes its items out of the next batch
                item.future.cancel()

    def observe_with(self, observer: BatchObserver) -> None:
        """Report batch sizes, queue wait and queue depth to `observer` from now on."""
        self._observer = observer

    @property
    def depth(self) -> int:
        """Pairs waiting in the queue."""
        return self._queued_pairs

    def _report_depth(self) -> None:
        if self._observer is not None:
            self._observer.queue_depth(self._queued_pairs)

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            # A scorer may be shared by apps on different loops (tests, benches): each loop
            # gets its own queue and worker.
            self._loop = loop
            self._queue = deque()
            self._queued_pairs = 0
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._run(), name="micro-batcher")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="micro-batcher")

    async def close(self) -> None:
        if self._worker is not None and self._loop is asyncio.get_running_loop():
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for item in self._queue:
            item.future.cancel()
        self._queue.clear()
        self._queued_pairs = 0
        self._worker = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)  # a forward pass under way finishes by itself
            self._executor = None

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._queue:
                continue
            wait = self.max_wait_s > 0 and (self._company or not self.adaptive_wait)
            if wait and len(self._queue) < self.max_batch:
                await asyncio.sleep(self.max_wait_s)  # let concurrent requests join
            taken = [i for i in self._drain() if not i.future.done()]
            self._company = len({i.caller for i in taken}) > 1
            self._report_depth()
            for batch in self.plan(taken):
                await self._run_batch(batch)
            if self._queue:
                self._wake.set()

    def _drain(self) -> list[_Item[T, R]]:
        # Take at most a few batches' worth so a flood cannot starve later arrivals' sorting.
        limit = self.max_batch * 4
        taken: list[_Item[T, R]] = []
        while self._queue and len(taken) < limit:
            item = self._queue.popleft()
            self._queued_pairs -= item.pairs
            taken.append(item)
        return taken

    def plan(self, items: list[_Item[T, R]]) -> list[list[_Item[T, R]]]:
        """Length-sorted batches under the item and token budgets (token cost of a padded batch
        = size x its longest item)."""
        ordered = sorted(items, key=lambda i: i.tokens)
        batches: list[list[_Item[T, R]]] = []
        current: list[_Item[T, R]] = []
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

    async def _run_batch(self, batch: list[_Item[T, R]]) -> None:
        live = [i for i in batch if not i.future.done()]
        if not live:
            return
        started = time.monotonic()
        assert self._loop is not None and self._executor is not None
        try:
            results = await self._loop.run_in_executor(self._executor, self._forward_safely, live)
        except asyncio.CancelledError:
            for item in live:
                item.future.cancel()
            raise
        except Exception as exc:  # the executor itself failed (shut down): every waiter learns
            results = [exc] * len(live)
        self.stats.batches += 1
        self.stats.pairs += sum(i.pairs for i in live)
        if self._observer is not None:  # queue wait: the oldest item's, up to its forward pass
            oldest = min(i.queued_at for i in live)
            self._observer.batch(sum(i.pairs for i in live), started - oldest)
        failed = 0
        for item, result in zip(live, results, strict=True):
            if item.future.done():
                continue
            if isinstance(result, BaseException):
                failed += 1
                item.future.set_exception(result)
            else:
                item.future.set_result(result)
        if failed:
            log.warning("scoring: %d of %d items in a batch failed", failed, len(live))

    def _forward_safely(self, items: list[_Item[T, R]]) -> list[R | BaseException]:
        """One result per item, an exception standing for a failed one; never raises. Out of
        memory: release cached memory and retry in halves. Another failure of a batch of
        several callers: run each half of the callers again, so only the failing one fails."""
        try:
            with self._forward_lock:
                results = list(self.forward([i.payload for i in items]))
            if len(results) != len(items):
                raise RuntimeError(
                    f"the forward pass gave {len(results)} results for {len(items)} items"
                )
            return results
        except Exception as exc:
            if is_out_of_memory(exc) and len(items) > 1:
                self.stats.oom_retries += 1
                log.warning("out of memory on a batch of %d items; retrying in halves", len(items))
                if self.on_oom is not None:
                    self.on_oom()
            else:
                callers = list(dict.fromkeys(i.caller for i in items))
                if len(callers) == 1:
                    return [exc] * len(items)
                self.stats.isolations += 1
                first = set(callers[: len(callers) // 2])
                head = [i for i in items if i.caller in first]
                tail = [i for i in items if i.caller not in first]
                results = self._forward_safely(head) + self._forward_safely(tail)
                by_item = dict(zip(map(id, head + tail), results, strict=True))
                return [by_item[id(i)] for i in items]
        half = len(items) // 2
        return self._forward_safely(items[:half]) + self._forward_safely(items[half:])
