"""The CPU default scorer: cached document embeddings and micro-batched query encoding."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.deadline import Deadline
from sidecar.documents import make_document
from sidecar.query import Query
from sidecar.scoring.minilm import MiniLMScorer

DOCS = [
    make_document(f"d{i}", title)
    for i, title in enumerate(
        [
            "Waterproof leather hiking boots",
            "Merino wool hiking socks",
            "Packable rain jacket",
            "Espresso machine, 15 bar",
            "Yoga mat with carry strap",
        ]
    )
]


def sharing(loaded: MiniLMScorer, micro_batching: bool) -> MiniLMScorer:
    """A scorer with its own caches and batching choice, on the already loaded weights."""
    scorer = MiniLMScorer(micro_batching=micro_batching, max_wait_ms=20)
    scorer._model, scorer.state = loaded._model, loaded.state
    return scorer


def counting(scorer: MiniLMScorer) -> list[int]:
    sizes: list[int] = []
    encode = scorer._encode

    def counted(texts):
        sizes.append(len(texts))
        return encode(texts)

    scorer._encode = counted  # type: ignore[method-assign]
    return sizes


async def score_all(scorer: MiniLMScorer, queries: list[str]) -> list[list[float]]:
    return list(
        await asyncio.gather(
            *(scorer.score(Query(q), DOCS, "", deadline=Deadline.after(60)) for q in queries)
        )
    )


def test_concurrent_queries_share_one_forward_pass(minilm: MiniLMScorer) -> None:
    batched, plain = sharing(minilm, True), sharing(minilm, False)
    queries = [f"hiking gear {n}" for n in range(8)]
    sizes = counting(batched)
    together = asyncio.run(score_all(batched, queries))
    # one pass for the five documents and one for the eight queries: not eight passes
    assert sorted(sizes) == [5, 8]
    alone = asyncio.run(score_all(plain, queries))
    for a, b in zip(together, alone, strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_the_vector_legs_queries_share_one_pass_and_scoring_then_encodes_nothing(
    minilm: MiniLMScorer,
) -> None:
    batched = sharing(minilm, True)
    batched.warm_documents(DOCS)
    queries = [f"trail gear {n}" for n in range(8)]
    sizes = counting(batched)

    async def hybrid_requests() -> tuple[list[list[float]], list[list[float]]]:
        vectors = await asyncio.gather(*(batched.embed_query(q) for q in queries))
        return list(vectors), await score_all(batched, queries)

    vectors, scores = asyncio.run(hybrid_requests())
    # the vector legs' eight new queries in one pass; the scoring reads them and the warm
    # documents from the caches (no thread hop, no pass) with the scores a pass gives (the
    # query vectors differ by float rounding between a batch of eight and one alone)
    assert sizes == [8]
    assert all(len(v) == batched.dimensions for v in vectors)
    for text, got in zip(queries, scores, strict=True):
        assert got == pytest.approx(sharing(minilm, False).score_sync(text, DOCS), abs=1e-5)


def test_documents_are_encoded_once(minilm: MiniLMScorer) -> None:
    scorer = sharing(minilm, False)
    sizes = counting(scorer)
    first = scorer.score_sync("waterproof boots", DOCS)
    scorer.score_sync("rain jacket", DOCS)
    assert sizes == [1, 5, 1]  # query, documents, then only the new query
    assert first.index(max(first)) == 0 and all(0.0 <= s <= 1.0 for s in first)
