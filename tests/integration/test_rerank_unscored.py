"""A scorer that answers but gives one document no usable score (None, or NaN): every rerank
route keeps each document's own index and score, answers every index once, and puts the
unscored document last with 0.0 (flagged where the shape has flags), never a 500."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from sidecar.scoring.minilm import MiniLMScorer
from tests.integration.test_rerank_compat import model_order

QUERY = "waterproof hiking boots"
MARK = "unscorable"
DOCUMENTS = [
    "merino wool hiking socks",
    f"{MARK} waterproof leather hiking boots",
    "waterproof hiking boots with a vibram sole",
    "stainless steel espresso machine",
]
UNSCORED_AT = 1


class OneUnscorable:
    """The shared MiniLM, except that documents whose title holds MARK get `missing` (None or
    NaN) instead of a score: a scorer that could not score one document of the batch."""

    reads_images = False

    def __init__(self, inner: MiniLMScorer, missing: float | None) -> None:
        self.inner, self.missing = inner, missing
        self.model_id, self.state = inner.model_id, inner.state
        self.score_identity = f"{inner.score_identity}+unscorable"

    async def load(self) -> None:
        return None

    async def score(self, query: Any, documents: Any, *args: Any, **kwargs: Any) -> list[Any]:
        scores = await self.inner.score(query, documents, *args, **kwargs)
        pairs = zip(documents, scores, strict=True)
        return [self.missing if MARK in d.title else s for d, s in pairs]

    async def close(self) -> None:
        return None


@pytest.fixture(params=[None, math.nan], ids=["none", "nan"])
def client(request: pytest.FixtureRequest, client_factory: Any, minilm: MiniLMScorer) -> Any:
    return client_factory(scorer=OneUnscorable(minilm, request.param))


def expected_scores(minilm: MiniLMScorer) -> dict[int, float]:
    """The model's own score of every scorable document, by its request position."""
    return {i: s for i, s in model_order(minilm, QUERY, DOCUMENTS) if i != UNSCORED_AT}


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def assert_ranked(ranks: list[tuple[int, float]], minilm: MiniLMScorer) -> None:
    """Each scorable document with its own score, best first; the unscored one last at 0.0."""
    expected = expected_scores(minilm)
    assert [i for i, _ in ranks[:-1]] == sorted(expected, key=lambda i: -expected[i])
    for i, score in ranks[:-1]:
        assert score == pytest.approx(expected[i], abs=1e-5), i
    assert ranks[-1] == (UNSCORED_AT, 0.0)
    assert all(type(score) is float for _, score in ranks)


def test_api_rerank_keeps_each_document_its_own_score(client: Any, minilm: MiniLMScorer) -> None:
    answer = client.post("/api/rerank", json={"query": QUERY, "documents": DOCUMENTS})
    assert answer.status_code == 200, answer.text
    results = strict_json(answer.text)["results"]
    assert_ranked([(r["index"], r["score"]) for r in results], minilm)
    for r in results:
        assert r["document"] == DOCUMENTS[r["index"]]
    last = results[-1]
    assert last["band"] == "unscored" and "unscored" in last["flags"]
    assert all("unscored" not in r["flags"] for r in results[:-1])


def test_v1_rerank_answers_every_index_once_and_flags_the_unscored(
    client: Any, minilm: MiniLMScorer
) -> None:
    body = {"query": QUERY, "documents": DOCUMENTS, "top_n": len(DOCUMENTS)}
    answer = client.post("/v1/rerank", json=body)
    assert answer.status_code == 200, answer.text
    parsed = strict_json(answer.text)
    assert_ranked([(r["index"], r["relevance_score"]) for r in parsed["results"]], minilm)
    assert parsed["meta"]["flags"] == {str(UNSCORED_AT): ["unscored"]}


def test_v2_rerank_answers_every_index_once(client: Any, minilm: MiniLMScorer) -> None:
    answer = client.post("/v2/rerank", json={"model": "m", "query": QUERY, "documents": DOCUMENTS})
    assert answer.status_code == 200, answer.text
    results = strict_json(answer.text)["results"]
    assert_ranked([(r["index"], r["relevance_score"]) for r in results], minilm)


def test_tei_rerank_answers_every_index_once(client: Any, minilm: MiniLMScorer) -> None:
    answer = client.post("/rerank", json={"query": QUERY, "texts": DOCUMENTS})
    assert answer.status_code == 200, answer.text
    assert_ranked([(r["index"], r["score"]) for r in strict_json(answer.text)], minilm)


def test_explain_refuses_an_explanation_it_cannot_score_whole(client: Any) -> None:
    """A fragment's delta is only meaningful beside the whole product's score: without usable
    scores the answer is the scorer's 503 (it was a 500, or deltas against the wrong fragment)."""
    product = {"title": DOCUMENTS[UNSCORED_AT], "selling_points": ["grippy sole", "light"]}
    answer = client.post("/api/explain", json={"query": QUERY, "product": product})
    assert answer.status_code == 503, answer.text
    body = strict_json(answer.text)
    assert body["error"] == "scoring_failed" and "no usable score" in body["message"]
    scorable = {"title": DOCUMENTS[0], "selling_points": ["grippy sole"]}
    fine = client.post("/api/explain", json={"query": QUERY, "product": scorable})
    assert fine.status_code == 200 and type(strict_json(fine.text)["score"]) is float
