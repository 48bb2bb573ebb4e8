"""The rerank APIs other tools speak, against a real sidecar over HTTP (uvicorn on 127.0.0.1):
Cohere's v1 and v2 through the real `cohere` SDK (`Client` and `ClientV2` with `base_url`), and
text-embeddings-inference's `/rerank` through plain httpx (TEI has no official Python client, and
`huggingface_hub`'s InferenceClient has no rerank call that targets TEI's /rerank).

Expected orders and scores come from the model itself (the shared MiniLM scorer, asked directly),
not from another route of the sidecar.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import cohere
import httpx
import pytest
import uvicorn

from sidecar.app import create_app
from sidecar.config import QuerySettings
from sidecar.documents import make_document
from sidecar.query import Normalizer
from sidecar.scoring.minilm import MiniLMScorer
from tests.conftest import make_settings
from tests.doubles import NeverReadyScorer, OverloadedScorer
from tests.redis_server import free_port

QUERY = "waterproof hiking boots"
DOCUMENTS = [
    "merino wool hiking socks, cushioned",
    "waterproof leather hiking boots with a vibram sole",
    "4 person camping tent, waterproof fly",
    "trail running shoes, breathable mesh",
    "stainless steel espresso machine, 15 bar",
]


def model_order(minilm: MiniLMScorer, query: str, documents: list[str]) -> list[tuple[int, float]]:
    """(index, score) from the best down, as the model scores the pairs."""
    text = Normalizer(QuerySettings().casing).query(query).text
    scores = minilm.score_sync(
        text, [make_document(str(i), d.strip()) for i, d in enumerate(documents)]
    )
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [(i, scores[i]) for i in order]


@pytest.fixture(scope="module")
def sidecar_url(minilm: MiniLMScorer) -> Iterator[str]:
    port = free_port()
    # raw scores: the expected ones are the model's own (the shipped calibration has its tests)
    settings = make_settings(port=port, scorer={"calibration": None})
    app = create_app(settings, wait_for_model=True, scorer=minilm)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "sidecar did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture
def co_v2(sidecar_url: str) -> Iterator[cohere.ClientV2]:
    """The SDK's v2 client as a user makes it, pointed at the sidecar (closed after the test)."""
    with cohere.ClientV2(api_key="unused-by-the-sidecar", base_url=sidecar_url, timeout=60) as co:
        yield co


@pytest.fixture
def co_v1(sidecar_url: str) -> Iterator[cohere.Client]:
    with cohere.Client(api_key="unused-by-the-sidecar", base_url=sidecar_url, timeout=60) as co:
        yield co


def assert_each_index_once(indices: list[int], count: int) -> None:
    assert sorted(indices) == list(range(count)), indices


# ------------------------------------------------------------------------- cohere ClientV2


def test_cohere_client_v2_reranks_in_the_models_order(
    co_v2: cohere.ClientV2, minilm: MiniLMScorer
) -> None:
    response = co_v2.rerank(
        model="rerank-v3.5",
        query=QUERY,
        documents=DOCUMENTS,
        request_options={"additional_headers": {"X-Request-ID": "v2-order-check"}},
    )
    expected = model_order(minilm, QUERY, DOCUMENTS)
    assert [r.index for r in response.results] == [i for i, _ in expected]
    assert_each_index_once([r.index for r in response.results], len(DOCUMENTS))
    for result, (_, score) in zip(response.results, expected, strict=True):
        assert result.relevance_score == pytest.approx(score, abs=1e-5)
    assert response.id == "v2-order-check"  # the request id, as in the X-Request-ID header
    assert response.meta is not None and response.meta.api_version is not None
    assert response.meta.api_version.version == "2"
    assert response.meta.billed_units is not None
    assert response.meta.billed_units.search_units == 1


def test_cohere_client_v2_top_n_and_the_score_cache(
    co_v2: cohere.ClientV2, minilm: MiniLMScorer
) -> None:
    documents = [f"{d} ({uuid.uuid4().hex[:6]})" for d in DOCUMENTS]  # never scored before
    first = co_v2.rerank(model="m", query=QUERY, documents=documents, top_n=2)
    again = co_v2.rerank(model="m", query=QUERY, documents=documents, top_n=2)
    expected = model_order(minilm, QUERY, documents)
    assert [r.index for r in first.results] == [i for i, _ in expected[:2]]
    assert [r.index for r in again.results] == [r.index for r in first.results]
    assert first.meta is not None and again.meta is not None
    extra_first, extra_again = first.meta.model_extra or {}, again.meta.model_extra or {}
    assert extra_first["cache_hits"] == 0 and extra_again["cache_hits"] == len(documents)


def test_cohere_client_v2_max_tokens_per_doc_cuts_documents(
    co_v2: cohere.ClientV2, minilm: MiniLMScorer
) -> None:
    # the boots are named only after the third word: cut to 3 words they are not boots
    documents = ["leather upper, waterproof hiking boots", "waterproof hiking boots"]
    cut = co_v2.rerank(model="m", query=QUERY, documents=documents, max_tokens_per_doc=3)
    expected = model_order(minilm, QUERY, ["leather upper, waterproof", "waterproof hiking boots"])
    assert [(r.index, r.relevance_score) for r in cut.results] == [
        (i, pytest.approx(s, abs=1e-5)) for i, s in expected
    ]


def test_cohere_client_v2_errors_are_cohere_errors(co_v2: cohere.ClientV2) -> None:
    with pytest.raises(cohere.BadRequestError) as empty:
        co_v2.rerank(model="m", query=QUERY, documents=[])
    assert empty.value.status_code == 400
    assert empty.value.body["message"] == "invalid request: documents is empty"
    assert empty.value.body["sidecar"]["field"] == "documents"
    with pytest.raises(cohere.BadRequestError) as zero:
        co_v2.rerank(model="m", query=QUERY, documents=DOCUMENTS, top_n=0)
    assert zero.value.body["message"].startswith("invalid request: top_n:")
    with pytest.raises(cohere.BadRequestError) as spans:
        co_v2.rerank(
            model="m", query=QUERY, documents=DOCUMENTS, relevant_spans={"mode": "enabled"}
        )
    assert spans.value.body["sidecar"]["field"] == "relevant_spans.mode"


# --------------------------------------------------------------------------- cohere Client


def test_cohere_client_v1_reranks_in_the_models_order(
    co_v1: cohere.Client, minilm: MiniLMScorer
) -> None:
    response = co_v1.rerank(query=QUERY, documents=DOCUMENTS, top_n=3, return_documents=True)
    expected = model_order(minilm, QUERY, DOCUMENTS)[:3]
    assert [r.index for r in response.results] == [i for i, _ in expected]
    assert len({r.index for r in response.results}) == 3
    for result, (i, score) in zip(response.results, expected, strict=True):
        assert result.relevance_score == pytest.approx(score, abs=1e-5)
        assert result.document is not None and result.document.text == DOCUMENTS[i]
    assert response.id and response.meta is not None and response.meta.api_version is not None
    assert response.meta.api_version.version == "1"


# ----------------------------------------------------------------- text-embeddings-inference


def test_tei_rerank_answers_every_text_in_the_models_order(
    sidecar_url: str, minilm: MiniLMScorer
) -> None:
    answer = httpx.post(
        f"{sidecar_url}/rerank",
        json={"query": QUERY, "texts": DOCUMENTS, "return_text": True, "truncate": True},
        headers={"X-Request-ID": "tei-order-check"},
        trust_env=False,
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"] == "tei-order-check"
    ranks = answer.json()
    expected = model_order(minilm, QUERY, DOCUMENTS)
    assert [r["index"] for r in ranks] == [i for i, _ in expected]
    assert_each_index_once([r["index"] for r in ranks], len(DOCUMENTS))
    for rank, (i, score) in zip(ranks, expected, strict=True):
        assert set(rank) == {"index", "score", "text"}
        assert rank["score"] == pytest.approx(score, abs=1e-5) and rank["text"] == DOCUMENTS[i]


def test_tei_raw_scores_are_log_odds_in_the_same_order(sidecar_url: str) -> None:
    def ask(raw: bool) -> list[dict[str, Any]]:
        body = {"query": QUERY, "texts": DOCUMENTS, "raw_scores": raw}
        answer = httpx.post(f"{sidecar_url}/rerank", json=body, trust_env=False, timeout=60)
        assert answer.status_code == 200, answer.text
        ranks: list[dict[str, Any]] = answer.json()
        return ranks

    plain, raw = ask(False), ask(True)
    assert [r["index"] for r in raw] == [r["index"] for r in plain]
    assert all("text" not in r for r in plain)
    for p, r in zip(plain, raw, strict=True):
        p_clipped = min(max(p["score"], 1e-7), 1 - 1e-7)
        assert r["score"] == pytest.approx(math.log(p_clipped / (1 - p_clipped)), abs=1e-6)
    assert any(r["score"] < 0 for r in raw) or any(r["score"] > 1 for r in raw)


def test_tei_truncation_direction_left_keeps_the_end(
    sidecar_url: str, minilm: MiniLMScorer
) -> None:
    # 600 characters of filler, then what matters: cut at the end (right) the boots are lost
    long = "lorem ipsum " * 50 + "waterproof hiking boots"
    short = "hiking socks"
    results = {}
    for direction in ("right", "left"):
        body = {"query": QUERY, "texts": [long, short], "truncation_direction": direction}
        answer = httpx.post(f"{sidecar_url}/rerank", json=body, trust_env=False, timeout=60)
        assert answer.status_code == 200, answer.text
        results[direction] = {r["index"]: r["score"] for r in answer.json()}
    keep = make_settings().scorer.max_doc_chars
    left = model_order(minilm, QUERY, [long[-keep:], short])
    right = model_order(minilm, QUERY, [long, short])
    assert results["left"] == {i: pytest.approx(s, abs=1e-5) for i, s in left}
    assert results["right"] == {i: pytest.approx(s, abs=1e-5) for i, s in right}
    assert results["left"][0] > results["right"][0]


@pytest.mark.parametrize(
    ("body", "status", "error_type", "field"),
    [
        ({"query": QUERY, "texts": []}, 400, "Empty", "texts"),
        ({"query": QUERY, "texts": ["a"] * 101}, 413, "Validation", "texts"),
        ({"query": QUERY, "texts": ["  "]}, 422, "Validation", "texts[0]"),
        ({"query": QUERY, "texts": "one text"}, 422, "Validation", "texts"),
        ({"texts": ["a"]}, 422, "Validation", "query"),
        (
            {"query": QUERY, "texts": ["a"], "truncation_direction": "up"},
            422,
            "Validation",
            "truncation_direction",
        ),
        ({"query": QUERY, "texts": ["a"], "timeout_ms": 10**9}, 422, "Validation", "timeout_ms"),
    ],
)
def test_tei_errors_are_tei_errors(
    sidecar_url: str, body: dict[str, Any], status: int, error_type: str, field: str
) -> None:
    answer = httpx.post(f"{sidecar_url}/rerank", json=body, trust_env=False, timeout=60)
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert error["error_type"] == error_type and error["error"]
    assert error["sidecar"]["field"] == field


def test_tei_ignores_keys_it_does_not_know_as_tei_does(sidecar_url: str) -> None:
    body = {"query": QUERY, "texts": DOCUMENTS[:2], "model": "BAAI/bge-reranker-base"}
    answer = httpx.post(f"{sidecar_url}/rerank", json=body, trust_env=False, timeout=60)
    assert answer.status_code == 200 and len(answer.json()) == 2


def test_the_routes_are_counted_in_the_metrics(sidecar_url: str, co_v2: cohere.ClientV2) -> None:
    httpx.post(f"{sidecar_url}/rerank", json={"query": QUERY, "texts": ["a"]}, trust_env=False)
    co_v2.rerank(model="m", query=QUERY, documents=["a"])
    metrics = httpx.get(f"{sidecar_url}/metrics", trust_env=False).text
    assert 'route="/rerank"' in metrics and 'route="/v2/rerank"' in metrics


# ----------------------------------------- the model's states, in each API's error shape


def test_a_model_still_loading_is_503_in_each_shape(client_factory: Any) -> None:
    client = client_factory(scorer=NeverReadyScorer())
    v2 = client.post("/v2/rerank", json={"model": "m", "query": "x", "documents": ["a"]})
    assert v2.status_code == 503 and v2.json()["sidecar"]["error"] == "model_not_ready"
    assert "is loading" in v2.json()["message"] and v2.json()["id"] == v2.headers["x-request-id"]
    tei = client.post("/rerank", json={"query": "x", "texts": ["a"]})
    assert tei.status_code == 503 and tei.json()["error_type"] == "Unhealthy"


def test_a_full_queue_is_429_in_each_shape(client_factory: Any) -> None:
    client = client_factory(scorer=OverloadedScorer())
    v2 = client.post("/v2/rerank", json={"model": "m", "query": "x", "documents": ["a"]})
    assert v2.status_code == 429 and "queue is full" in v2.json()["message"]
    tei = client.post("/rerank", json={"query": "x", "texts": ["a"]})
    assert tei.status_code == 429 and tei.json()["error_type"] == "Overloaded"


def test_a_missed_deadline_is_a_backend_error_not_a_500(client: Any) -> None:
    fresh = [f"{uuid.uuid4().hex} {d}" for d in DOCUMENTS]  # uncached: the model must run
    tei = client.post("/rerank", json={"query": "boots", "texts": fresh, "timeout_ms": 1})
    assert tei.status_code == 424 and tei.json()["error_type"] == "Backend"
    assert "unscored" in tei.json()["error"]
    fresh = [f"{uuid.uuid4().hex} {d}" for d in DOCUMENTS]
    v2 = client.post(
        "/v2/rerank", json={"model": "m", "query": "boots", "documents": fresh, "timeout_ms": 1}
    )
    assert v2.status_code == 503 and v2.json()["sidecar"]["error"] == "scoring_failed"
