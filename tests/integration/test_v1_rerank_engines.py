"""/v1/rerank as the engines call it: OpenSearch's ML Commons connector (cohere pre/post process
functions: `top_n` = the number of documents, scores mapped back by `index`, read as a double)
and Elasticsearch's `custom` inference service (`${query}` and `${input}` in a JSON body).

Every index once, JSON floats, the pair cache and the micro-batcher, the request's own deadline
counted from its arrival, the project's 4xx for a body either engine could send wrongly, and the
route's metrics and request id. Expected orders come from the model itself.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from sidecar.app import create_app
from sidecar.scoring.minilm import MiniLMScorer
from tests.conftest import make_settings
from tests.integration.test_observability import scrape, value
from tests.integration.test_rerank_compat import DOCUMENTS as COMPAT_DOCUMENTS
from tests.integration.test_rerank_compat import QUERY, model_order
from tests.live_server import serve_in_thread

# the compat tests' documents up to the espresso machine: the outdoor gear only
DOCUMENTS = COMPAT_DOCUMENTS[:4]


def fresh(documents: list[str]) -> list[str]:
    """The documents under text no test scored before, so the model must run."""
    tag = uuid.uuid4().hex[:8]
    return [f"{d} ({tag})" for d in documents]


def strict_json(text: str) -> Any:
    """JSON as a Java parser reads it: NaN and Infinity are not numbers."""

    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_every_index_once_in_the_models_order_with_float_scores(minilm: MiniLMScorer) -> None:
    documents = fresh(DOCUMENTS)
    # what OpenSearch's cohere pre process function sends: top_n = the number of documents
    body = {"query": QUERY, "documents": documents, "top_n": len(documents)}
    # raw scores: the expected ones are the model's own (the shipped calibration has its tests)
    raw = make_settings(scorer={"calibration": None})
    app = create_app(raw, wait_for_model=True, scorer=minilm)
    with TestClient(app) as client:
        answer = client.post("/v1/rerank", json=body)
    assert answer.status_code == 200, answer.text
    results = strict_json(answer.text)["results"]
    expected = model_order(minilm, QUERY, documents)
    assert [r["index"] for r in results] == [i for i, _ in expected]
    for result, (_, score) in zip(results, expected, strict=True):
        assert type(result["index"]) is int and type(result["relevance_score"]) is float
        assert result["relevance_score"] == pytest.approx(score, abs=1e-5)


@pytest.mark.parametrize("top_n", [None, len(DOCUMENTS) + 5])
def test_top_n_absent_or_above_the_count_answers_every_document(
    client: Any, top_n: int | None
) -> None:
    body: dict[str, Any] = {"query": QUERY, "documents": DOCUMENTS}
    if top_n is not None:
        body["top_n"] = top_n  # a limit, as Cohere reads it: not an error
    answer = client.post("/v1/rerank", json=body)
    assert answer.status_code == 200, answer.text
    assert sorted(r["index"] for r in answer.json()["results"]) == list(range(len(DOCUMENTS)))


def test_a_repeated_call_is_served_from_the_pair_cache_not_the_model(client: Any) -> None:
    documents = fresh(DOCUMENTS)
    body = {"query": QUERY, "documents": documents, "top_n": len(documents)}
    before = scrape(client)
    first = client.post("/v1/rerank", json=body, headers={"X-Request-ID": "engine-call-1"})
    middle = scrape(client)
    again = client.post("/v1/rerank", json=body)
    after = scrape(client)
    assert first.status_code == again.status_code == 200
    assert first.json()["meta"]["cache_hits"] == 0
    assert again.json()["meta"]["cache_hits"] == len(documents)
    assert again.json()["results"] == first.json()["results"]

    def moved(name: str, samples: Any, since: Any, **labels: str) -> float:
        return value(samples, name, **labels) - value(since, name, **labels)

    # the first call went through the micro-batcher, the second not at all
    assert moved("sidecar_model_pairs_total", middle, before) == len(documents)
    assert moved("sidecar_model_pairs_total", after, middle) == 0
    # the pair cache's lookups and the scoring stages show on /metrics as a search's do
    assert moved("sidecar_cache_lookups_total", middle, before, result="miss") == len(documents)
    assert moved("sidecar_cache_lookups_total", after, middle, result="hit") == len(documents)
    assert moved("sidecar_stage_duration_seconds_count", middle, before, stage="model") == 1
    route = {"route": "/v1/rerank", "method": "POST", "status": "200"}
    assert value(after, "sidecar_http_requests_total", **route) == 2
    # the request id is echoed and is the answer's `id`
    assert first.headers["x-request-id"] == first.json()["id"] == "engine-call-1"
    assert again.json()["id"] == again.headers["x-request-id"] != "engine-call-1"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": QUERY, "documents": []}, "documents"),
        ({"documents": DOCUMENTS}, "query"),
        ({"query": QUERY}, "documents"),
        ({"query": QUERY, "documents": DOCUMENTS, "top_n": 0}, "top_n"),
        ({"query": QUERY, "documents": "one document"}, "documents"),
        ({"query": QUERY, "documents": ["a"] * 101}, "documents"),
        ({"query": QUERY, "documents": ["  "]}, "documents[0]"),
    ],
)
def test_a_body_an_engine_could_send_wrongly_is_a_422_naming_the_field(
    client: Any, body: dict[str, Any], field: str
) -> None:
    answer = client.post("/v1/rerank", json=body)
    assert answer.status_code == 422, answer.text
    error = answer.json()
    assert error["error"] == "invalid_request" and error["field"] == field and error["message"]


@pytest.fixture(scope="module")
def live_url(minilm: MiniLMScorer) -> Iterator[str]:
    """A real server: a body can only arrive slowly over a socket."""
    app = create_app(make_settings(), wait_for_model=True, scorer=minilm)
    url, server, thread = serve_in_thread(app, start_timeout_s=60)
    yield url
    server.should_exit = True
    thread.join(timeout=30)


def _dripped(body: bytes, pause_s: float) -> Iterator[bytes]:
    """The body in two halves with a pause between them (sent chunked)."""
    yield body[: len(body) // 2]
    time.sleep(pause_s)
    yield body[len(body) // 2 :]


def test_the_budget_counts_from_the_requests_arrival_body_reading_included(
    live_url: str,
) -> None:
    """A body that took longer to arrive than the whole budget leaves the model nothing: the
    answer is the missed deadline (503), not a full budget started after the body was read."""
    headers = {"content-type": "application/json"}

    def body(timeout_ms: int) -> bytes:
        payload = {"query": QUERY, "documents": fresh(DOCUMENTS), "timeout_ms": timeout_ms}
        return json.dumps(payload).encode()

    with httpx.Client(base_url=live_url, timeout=60, trust_env=False) as http:
        # the same budget is plenty for these documents when the body comes at once
        at_once = http.post("/v1/rerank", content=body(1000), headers=headers)
        assert at_once.status_code == 200, at_once.text
        slow = http.post("/v1/rerank", content=_dripped(body(1000), 2.5), headers=headers)
    assert slow.status_code == 503, slow.text
    error = slow.json()
    assert error["error"] == "scoring_failed" and "deadline" in error["message"]
