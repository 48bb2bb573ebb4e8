"""The micro-batcher with whole requests as items (how the MiniLM scorer uses it): concurrent
requests share a forward pass, each gets its own results back, one failing request does not fail
the requests batched with it, and a request's deadline cuts its answer, not the batch.
test_batching.py has the queue's rules for pairs (the Lychee way)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from sidecar.backends.embedded import EmbeddedBackend
from sidecar.cache.memory import MemoryCache
from sidecar.config import FieldMap
from sidecar.deadline import Deadline
from sidecar.documents import make_document
from sidecar.errors import Overloaded
from sidecar.pipeline import Pipeline, SearchParams
from sidecar.query import Query
from sidecar.rules.store import RuleStore
from sidecar.scoring import batching
from sidecar.scoring.base import ModelState
from sidecar.scoring.batching import MicroBatcher
from sidecar.scoring.minilm import MiniLMScorer
from sidecar.scoring_service import ScoringService


class Requests:
    """forward(requests) -> per request, one score per document: len(document) / 100, with the
    request's query length added to tell requests apart. A query "poison" makes the whole pass
    raise; a query "bad" is a failed result for that request alone."""

    def __init__(self) -> None:
        self.passes: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, jobs: list[tuple[str, list[str]]]) -> list[list[float] | Exception]:
        self.gate.wait(5)
        self.passes.append([query for query, _ in jobs])
        if any(query == "poison" for query, _ in jobs):
            raise ValueError("the tokenizer choked on a poisoned request")
        return [
            ValueError("bad request")
            if query == "bad"
            else [len(query) + len(d) / 100 for d in docs]
            for query, docs in jobs
        ]


async def submit(batcher: MicroBatcher[Any, Any], query: str, docs: list[str]) -> list[float]:
    (scores,) = await batcher.submit([(query, docs)], [1], pairs=[len(docs)])
    return scores  # type: ignore[no-any-return]


async def test_concurrent_requests_share_one_pass_and_get_their_own_results() -> None:
    forward = Requests()
    forward.gate.clear()  # hold the first pass so that the rest queue up behind it
    batcher: MicroBatcher[Any, Any] = MicroBatcher(forward, max_batch=64, max_wait_s=0)
    first = asyncio.create_task(submit(batcher, "x", ["a"]))
    await asyncio.sleep(0.05)
    queries = [f"q{'-' * n}" for n in range(10)]
    rest = [asyncio.create_task(submit(batcher, q, ["ab", "abcd"])) for q in queries]
    await asyncio.sleep(0.05)
    forward.gate.set()
    assert await first == [1.01]
    results = await asyncio.gather(*rest)
    assert forward.passes == [["x"], queries]  # ten requests, one forward pass
    for query, scores in zip(queries, results, strict=True):
        assert scores == [len(query) + 0.02, len(query) + 0.04]
    assert batcher.stats.pairs == 1 + 20  # pairs are counted, not requests
    await batcher.close()


async def test_a_failed_result_fails_only_its_request() -> None:
    batcher: MicroBatcher[Any, Any] = MicroBatcher(Requests(), max_batch=8, max_wait_s=0.05)
    good, bad, other = await asyncio.gather(
        submit(batcher, "good", ["a"]),
        submit(batcher, "bad", ["a"]),
        submit(batcher, "fine", ["ab"]),
        return_exceptions=True,
    )
    assert good == [4.01] and other == [4.02]
    assert isinstance(bad, ValueError) and str(bad) == "bad request"
    await batcher.close()


async def test_a_pass_that_raises_is_retried_without_the_request_that_broke_it() -> None:
    forward = Requests()
    batcher: MicroBatcher[Any, Any] = MicroBatcher(forward, max_batch=8, max_wait_s=0.05)
    results = await asyncio.gather(
        submit(batcher, "one", ["a"]),
        submit(batcher, "poison", ["a"]),
        submit(batcher, "three", ["a"]),
        submit(batcher, "four", ["a"]),
        return_exceptions=True,
    )
    assert results[0] == [3.01] and results[2] == [5.01] and results[3] == [4.01]
    assert isinstance(results[1], ValueError) and "poisoned" in str(results[1])
    assert forward.passes[0] == ["one", "poison", "three", "four"]  # first all together
    assert ["poison"] in forward.passes  # then the poisoned one alone
    assert batcher.stats.isolations >= 1
    # and the worker lives on
    assert await submit(batcher, "later", ["a"]) == [5.01]
    await batcher.close()


async def test_a_model_that_fails_for_everyone_fails_every_request() -> None:
    def broken(jobs: list[Any]) -> list[Any]:
        raise RuntimeError("device lost")

    batcher: MicroBatcher[Any, Any] = MicroBatcher(broken, max_batch=8, max_wait_s=0.05)
    results = await asyncio.gather(
        *(submit(batcher, f"q{n}", ["a"]) for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) and str(r) == "device lost" for r in results)
    await batcher.close()


async def test_a_forward_pass_that_miscounts_fails_its_requests_not_the_worker() -> None:
    calls = []

    def short(jobs: list[Any]) -> list[Any]:
        calls.append(len(jobs))
        return [[0.5]] if len(calls) == 1 else [[0.5] for _ in jobs]

    batcher: MicroBatcher[Any, Any] = MicroBatcher(short, max_batch=8, max_wait_s=0.05)
    results = await asyncio.gather(
        submit(batcher, "a", ["x"]), submit(batcher, "b", ["x"]), return_exceptions=True
    )
    # the miscounted pass is run again per caller, where it counts right
    assert results == [[0.5], [0.5]]
    await batcher.close()


async def test_the_queue_bound_counts_pairs() -> None:
    forward = Requests()
    forward.gate.clear()
    batcher: MicroBatcher[Any, Any] = MicroBatcher(forward, max_batch=1, max_wait_s=0, max_queue=10)
    running = asyncio.create_task(submit(batcher, "a", ["x"] * 4))
    await asyncio.sleep(0.05)  # taken into the forward pass: no longer queued
    waiting = asyncio.create_task(submit(batcher, "b", ["x"] * 8))
    await asyncio.sleep(0.01)
    assert batcher.depth == 8
    with pytest.raises(Overloaded, match="8 pairs waiting"):
        await submit(batcher, "c", ["x"] * 3)  # one request, but three pairs over the bound
    forward.gate.set()
    assert len(await running) == 4 and len(await waiting) == 8
    assert batcher.depth == 0
    await batcher.close()


async def test_a_lone_request_does_not_wait_for_company(monkeypatch: pytest.MonkeyPatch) -> None:
    """adaptive_wait: the wait for company happens only after a pass that had company."""
    waits: list[float] = []
    sleep = asyncio.sleep

    async def recording_sleep(delay: float, *args: Any) -> Any:
        if delay == 0.5:
            waits.append(delay)
        return await sleep(0 if delay == 0.5 else delay, *args)

    monkeypatch.setattr(batching.asyncio, "sleep", recording_sleep)
    batcher: MicroBatcher[Any, Any] = MicroBatcher(
        Requests(), max_batch=8, max_wait_s=0.5, adaptive_wait=True
    )
    for n in range(3):  # one at a time: never company
        assert await submit(batcher, "q" * n, ["a"]) == [n + 0.01]
    assert waits == []
    await asyncio.gather(submit(batcher, "a", ["a"]), submit(batcher, "b", ["a"]))
    await asyncio.gather(submit(batcher, "c", ["a"]), submit(batcher, "d", ["a"]))
    assert waits == [0.5]  # after the pass with two callers, the next one waited for company
    await batcher.close()


class Observer:
    def __init__(self) -> None:
        self.batches: list[tuple[int, float]] = []
        self.depths: list[int] = []

    def batch(self, size: int, queue_wait_s: float) -> None:
        self.batches.append((size, queue_wait_s))

    def queue_depth(self, depth: int) -> None:
        self.depths.append(depth)


async def test_the_observer_hears_pairs_per_pass_and_the_queue_in_pairs() -> None:
    observer = Observer()
    batcher: MicroBatcher[Any, Any] = MicroBatcher(Requests(), max_batch=8, max_wait_s=0.05)
    batcher.observe_with(observer)
    await asyncio.gather(submit(batcher, "a", ["x"] * 3), submit(batcher, "b", ["x"] * 2))
    assert [size for size, _ in observer.batches] == [5]
    assert all(wait >= 0 for _, wait in observer.batches)
    assert max(observer.depths) == 5 and observer.depths[-1] == 0
    await batcher.close()


# ----- the MiniLM scorer's requests through the batcher -------------------------------------

DOCS = [
    make_document(f"d{i}", title)
    for i, title in enumerate(
        ["Waterproof leather hiking boots", "Merino wool hiking socks", "Packable rain jacket"]
    )
]


def sharing(loaded: MiniLMScorer, micro_batching: bool = True) -> MiniLMScorer:
    scorer = MiniLMScorer(micro_batching=micro_batching, max_wait_ms=20)
    scorer._model, scorer.state = loaded._model, loaded.state
    return scorer


async def test_minilm_requests_are_one_item_each_and_map_back(minilm: MiniLMScorer) -> None:
    scorer = sharing(minilm)
    assert scorer.batcher is not None
    queries = ["hiking boots", "warm socks", "rain jacket", "boots for hiking in the rain"]
    documents: list[Sequence[Any]] = [DOCS, DOCS[:2], DOCS[1:], [DOCS[2], DOCS[0]]]
    together = await asyncio.gather(
        *(
            scorer.score(Query(q), d, "", deadline=Deadline.after(60))
            for q, d in zip(queries, documents, strict=True)
        )
    )
    assert scorer.batcher.stats.batches == 1  # four requests, one pass
    assert scorer.batcher.stats.pairs == sum(len(d) for d in documents)
    alone = sharing(minilm, micro_batching=False)
    for q, d, scores in zip(queries, documents, together, strict=True):
        # the numbers of scoring that request alone (a query encoded beside others is padded
        # with them: the same to float rounding): nothing leaks between requests
        assert scores == pytest.approx(
            await alone.score(Query(q), d, "", deadline=Deadline.after(60)), abs=1e-5
        )
    best = {
        q: max(range(len(s)), key=s.__getitem__) for q, s in zip(queries, together, strict=True)
    }
    assert documents[0][best["hiking boots"]].id == "d0"
    assert documents[2][best["rain jacket"]].id == "d2"
    await scorer.close()


class Gated:
    """A scorer on the real batcher whose forward passes wait for `gate`: slow on demand."""

    model_id = "gated"
    score_identity = "gated"
    reads_images = False

    def __init__(self) -> None:
        self.state = ModelState(status="ready", progress=1.0)
        self.gate = threading.Event()
        self.passes: list[int] = []
        self.batcher: MicroBatcher[Any, Any] = MicroBatcher(self._forward, max_wait_s=0.25)

    def _forward(self, jobs: list[tuple[str, Sequence[Any]]]) -> list[list[float]]:
        self.gate.wait(10)
        self.passes.append(len(jobs))
        return [[0.5 + len(query) / 100] * len(docs) for query, docs in jobs]

    async def load(self) -> None:
        return None

    async def score(self, query: Query, documents: Any, *args: Any, **kwargs: Any) -> Any:
        (scores,) = await self.batcher.submit(
            [(query.text, documents)], [1], pairs=[len(documents)]
        )
        return scores

    async def close(self) -> None:
        await self.batcher.close()


async def test_a_deadline_cuts_its_request_not_the_batch_and_late_scores_are_cached() -> None:
    backend = EmbeddedBackend({"title": 1.0})
    backend.add_index("products", [{"id": d.id, "title": d.title} for d in DOCS])
    scorer, cache = Gated(), MemoryCache()
    scoring = ScoringService(scorer, cache)
    pipeline = Pipeline(backend, scoring, RuleStore(), FieldMap())
    hurried = SearchParams(index="products", query=Query("hiking"))
    patient = SearchParams(index="products", query=Query("hiking socks"))

    async def release_later() -> None:
        await asyncio.sleep(1.0)  # after the hurried request's deadline
        scorer.gate.set()

    fast, slow, _ = await asyncio.gather(
        pipeline.search(hurried, Deadline.after(0.3)),
        pipeline.search(patient, Deadline.after(20.0)),
        release_later(),
    )
    assert fast.report.status == "fallback" and "deadline" in fast.report.reason
    assert slow.report.status == "ok"
    assert scorer.passes == [2]  # both requests were in the one pass
    assert {h.ranked.candidate.model_score for h in slow.hits if h.ranked} == {0.62}
    await scoring.drain()  # the hurried request's scores land in the cache after its answer
    again = await pipeline.search(
        SearchParams(index="products", query=Query("hiking")), Deadline.after(2.0)
    )
    assert again.report.status == "ok" and again.report.cache_misses == 0
    assert again.report.cache_hits == fast.window > 0
    assert scorer.passes == [2]
    await scorer.close()
