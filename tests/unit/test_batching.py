"""MicroBatcher with a recording fake forward pass (the model's batching is tested in
test_lychee.py; here the queue's own rules)."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch

from sidecar.errors import Overloaded
from sidecar.scoring.batching import MicroBatcher, is_out_of_memory


class Recorder:
    """forward(payloads) -> one score per payload (its number / 100); records each batch."""

    def __init__(self, fail: Exception | None = None, oom_above: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail = fail
        self.oom_above = oom_above
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, payloads: list[int]) -> list[float]:
        self.gate.wait(5)
        if self.oom_above is not None and len(payloads) > self.oom_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.batches.append(list(payloads))
        if self.fail is not None:
            raise self.fail
        return [p / 100 for p in payloads]


async def test_scores_come_back_in_order_per_caller() -> None:
    forward = Recorder()
    batcher = MicroBatcher(forward, max_batch=8, max_wait_s=0.05)
    a, b = await asyncio.gather(
        batcher.submit([5, 1, 9], [50, 10, 90]), batcher.submit([3, 7], [30, 70])
    )
    assert a == [0.05, 0.01, 0.09] and b == [0.03, 0.07]
    assert forward.batches == [[1, 3, 5, 7, 9]]  # one length-sorted batch for both callers
    await batcher.close()


async def test_batches_respect_size_and_token_budgets() -> None:
    forward = Recorder()
    batcher = MicroBatcher(forward, max_batch=3, max_tokens=100, max_wait_s=0.05)
    payloads = list(range(1, 9))
    tokens = [10, 10, 10, 10, 40, 40, 60, 10]
    scores = await batcher.submit(payloads, tokens)
    assert scores == [p / 100 for p in payloads]
    for batch in forward.batches:
        assert len(batch) <= 3
        assert max(tokens[p - 1] for p in batch) * len(batch) <= 100
    assert sorted(p for b in forward.batches for p in b) == payloads
    await batcher.close()


async def test_a_failed_batch_fails_every_waiter_and_the_worker_lives_on() -> None:
    forward = Recorder(fail=RuntimeError("device lost"))
    batcher = MicroBatcher(forward, max_batch=8, max_wait_s=0.05)
    results = await asyncio.gather(
        batcher.submit([1, 2], [1, 1]), batcher.submit([3], [1]), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) and str(r) == "device lost" for r in results)
    forward.fail = None
    assert await batcher.submit([4], [1]) == [0.04]
    await batcher.close()


async def test_cancelled_callers_are_skipped() -> None:
    forward = Recorder()
    forward.gate.clear()  # hold the first batch inside the forward pass
    batcher = MicroBatcher(forward, max_batch=1, max_wait_s=0)
    first = asyncio.create_task(batcher.submit([1], [1]))
    await asyncio.sleep(0.05)
    gone = asyncio.create_task(batcher.submit([2], [1]))
    kept = asyncio.create_task(batcher.submit([3], [1]))
    await asyncio.sleep(0.05)
    gone.cancel()
    forward.gate.set()
    assert await first == [0.01] and await kept == [0.03]
    assert [2] not in forward.batches
    await batcher.close()


async def test_a_full_queue_is_overloaded() -> None:
    forward = Recorder()
    forward.gate.clear()
    batcher = MicroBatcher(forward, max_batch=2, max_wait_s=0, max_queue=4)
    running = asyncio.create_task(batcher.submit([1, 2], [1, 1]))
    await asyncio.sleep(0.05)  # the worker holds these two in the forward pass
    waiting = asyncio.create_task(batcher.submit([3, 4, 5], [1, 1, 1]))
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded, match="queue is full"):
        await batcher.submit([6, 7], [1, 1])
    forward.gate.set()
    assert await running == [0.01, 0.02] and await waiting == [0.03, 0.04, 0.05]
    await batcher.close()


async def test_out_of_memory_halves_the_batch_and_retries() -> None:
    """A real CUDA out-of-memory cannot be caused on this CPU machine: the fake forward raises
    torch.cuda.OutOfMemoryError for batches above two pairs, as a full card would."""
    forward = Recorder(oom_above=2)
    released = []
    batcher = MicroBatcher(forward, max_batch=8, max_wait_s=0, on_oom=lambda: released.append(True))
    scores = await batcher.submit(list(range(1, 8)), [1] * 7)
    assert scores == [p / 100 for p in range(1, 8)]
    assert all(len(b) <= 2 for b in forward.batches)
    assert batcher.stats.oom_retries >= 2 and released
    await batcher.close()


async def test_out_of_memory_on_a_single_pair_is_an_error() -> None:
    forward = Recorder(oom_above=0)
    batcher = MicroBatcher(forward, max_batch=4, max_wait_s=0)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        await batcher.submit([1, 2], [1, 1])
    await batcher.close()


def test_out_of_memory_is_recognized() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))


def test_each_event_loop_gets_its_own_worker() -> None:
    batcher = MicroBatcher(Recorder(), max_wait_s=0)
    assert asyncio.run(batcher.submit([1], [1])) == [0.01]
    assert asyncio.run(batcher.submit([2], [1])) == [0.02]  # a fresh loop, a fresh worker
