"""POST /api/rerank (Lychee Rerank MM's API) and the health routes."""

from __future__ import annotations

import pytest

from tests.doubles import NeverReadyScorer, OverloadedScorer


def test_results_sorted_with_request_positions(client) -> None:
    docs = [
        "hiking socks, merino wool",
        "waterproof leather hiking boots",
        {"text": "rain jacket", "image_url": "https://img.example/j.png"},
    ]
    body = client.post(
        "/api/rerank", json={"query": "waterproof hiking boots", "documents": docs}
    ).json()
    results = body["results"]
    assert next(r["index"] for r in results) == 1
    assert sorted(r["index"] for r in results) == [0, 1, 2]
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert results[0]["document"] == docs[1] and body["rerank_status"] == "ok"
    # full precision in JSON, not rounded for display
    assert any(len(repr(r["score"]).split(".")[1]) > 3 for r in results)


def test_top_n_and_repeat_from_cache(client) -> None:
    payload = {
        "query": "espresso machine",
        "documents": ["espresso machine 15 bar", "coffee beans", "milk frother"],
        "top_n": 2,
    }
    first = client.post("/api/rerank", json=payload).json()
    second = client.post("/api/rerank", json=payload).json()
    assert len(first["results"]) == 2
    assert first["cache"]["misses"] == 3 and second["cache"]["hits"] == 3
    assert first["results"] == second["results"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "x", "documents": []}, "documents"),
        ({"query": "x", "documents": ["a"] * 101}, "documents"),
        ({"query": "x", "documents": [""]}, "documents[0]"),
        ({"query": "x", "documents": [{"text": ""}]}, "documents.0"),
        ({"query": "", "documents": ["a"]}, "query"),
        ({"query": "x", "documents": "a"}, "documents"),
        ({"query": "x", "documents": ["a"], "top_n": 0}, "top_n"),
    ],
)
def test_bad_input(client, body, field) -> None:
    r = client.post("/api/rerank", json=body)
    assert r.status_code == 422, r.json()
    assert r.json()["field"] == field


def test_cap_is_configurable(client_factory) -> None:
    small = client_factory(limits={"max_rerank_documents": 2})
    r = small.post("/api/rerank", json={"query": "x", "documents": ["a", "b", "c"]})
    assert r.status_code == 422 and "at most 2" in r.json()["message"]


def test_readiness_reports_the_catalog_warm_up(client) -> None:
    import time

    from sidecar.demo import load_catalog

    for _ in range(300):
        warmup = client.get("/readyz").json()["model"]["warmup"]
        if warmup.get("state") == "done":
            break
        time.sleep(0.1)
    total = len(load_catalog())
    assert warmup == {"state": "done", "done": total, "total": total}


@pytest.mark.slow
def test_a_replica_is_not_ready_while_its_catalog_is_being_encoded() -> None:
    """A search during the embedded catalog's warm-up waits on it and falls back, so /readyz
    keeps traffic away until the warm-up is done. Its own model, as a fresh pod has."""
    import time

    from fastapi.testclient import TestClient

    from sidecar.app import create_app
    from tests.conftest import make_settings

    seen: list[tuple[str, int]] = []
    with TestClient(create_app(make_settings())) as fresh:
        for _ in range(1200):
            ready = fresh.get("/readyz")
            state = ready.json()["model"]["warmup"].get("state", "none")
            seen.append((state, ready.status_code))
            if state == "done" and ready.status_code == 200:
                break
            time.sleep(0.05)
    assert ("running", 503) in seen and ("running", 200) not in seen
    assert seen[-1] == ("done", 200)


def test_health_and_readiness(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True and body["not_ready"] == []
    assert body["model"]["status"] == "ready" and body["engine"]["kind"] == "embedded"


def test_readiness_names_the_model_while_loading(client_factory) -> None:
    c = client_factory(scorer=NeverReadyScorer())
    r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["not_ready"] == ["model"]
    assert c.get("/healthz").status_code == 200
    # /search still answers in engine order and says why; /api/rerank has no order to offer
    body = c.post("/search", json={"query": "yoga mat"}).json()
    assert body["rerank_status"] == "fallback" and "model not ready (loading" in body["reason"]
    r = c.post("/api/rerank", json={"query": "x", "documents": ["a"]})
    assert r.status_code == 503 and r.json()["error"] == "model_not_ready"


def test_full_queue_is_429_on_rerank_and_fallback_on_search(client_factory) -> None:
    c = client_factory(scorer=OverloadedScorer())
    r = c.post("/api/rerank", json={"query": "x", "documents": ["a"]})
    assert r.status_code == 429 and r.json()["error"] == "overloaded"
    body = c.post("/search", json={"query": "yoga mat"}).json()
    assert body["rerank_status"] == "fallback" and "Overloaded" in body["reason"]
