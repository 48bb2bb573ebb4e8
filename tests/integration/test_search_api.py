"""/search end to end on the embedded default: demo catalog, MiniLM, in-process cache."""

from __future__ import annotations

import uuid

import pytest

from sidecar.demo import load_catalog, load_queries
from tests.doubles import NeverReadyScorer

QUERIES = {q["query"]: q for q in load_queries()}


def ids(response) -> list[str]:
    return [h["id"] for h in response.json()["hits"]]


def precision_at_10(client, query: str, relevant: set[str], **extra) -> float:
    body = client.post("/search", json={"query": query, "size": 10, **extra}).json()
    return sum(h["id"] in relevant for h in body["hits"]) / 10


def test_reranking_lifts_relevant_products_over_near_misses(client, client_factory) -> None:
    # a model that never gets ready leaves the engine's order, labelled fallback
    engine_only = client_factory(scorer=NeverReadyScorer())
    engine, reranked = [], []
    for q in load_queries():
        relevant = set(q["relevant_ids"])
        engine.append(precision_at_10(engine_only, q["query"], relevant))
        reranked.append(precision_at_10(client, q["query"], relevant, timeout_ms=30_000))
    mean_engine, mean_reranked = sum(engine) / len(engine), sum(reranked) / len(reranked)
    assert mean_reranked >= mean_engine + 0.05, (mean_engine, mean_reranked)
    assert reranked[list(QUERIES).index("yoga mat")] > engine[list(QUERIES).index("yoga mat")]


def test_every_hit_carries_scores_band_and_source(client) -> None:
    body = client.post("/search", json={"query": "espresso machine", "size": 5}).json()
    assert body["window"] > 5 and len(body["hits"]) == 5
    for hit in body["hits"]:
        assert 0 <= hit["model_score"] <= 1 and hit["reranked"] is True
        assert hit["band"] in {"strong", "medium", "weak"} and hit["source"]["title"]
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)
    assert set(body["timings"]) >= {"engine_ms", "scoring_ms", "rules_ms", "total_ms"}


def test_explain_lists_rules_that_fired(client) -> None:
    best_seller = next(p for p in load_catalog() if p["sales"] >= 1000)
    body = client.post(
        "/search", json={"query": best_seller["title"], "explain": True, "window": 20}
    ).json()
    hit = next(h for h in body["hits"] if h["id"] == best_seller["id"])
    assert hit["explain"]["model_score"] >= 0.75
    assert [r["rule"] for r in hit["explain"]["rules"]] == ["best-sellers"]
    assert hit["score"] == pytest.approx(hit["explain"]["blended_score"] * 1.2)


def test_dropped_hits_are_counted(client) -> None:
    # the lexical window holds products the model scores below the threshold ("hiking" socks)
    body = client.post(
        "/search",
        json={"query": "waterproof hiking boots", "window": 100, "retrieval": "lexical"},
    ).json()
    assert body["dropped"] > 0
    assert all(h["model_score"] >= 0.4 for h in body["hits"])


def test_paging_walks_one_reranked_order(client) -> None:
    whole = ids(client.post("/search", json={"query": "running shoes", "size": 20}))
    page2 = ids(client.post("/search", json={"query": "running shoes", "from": 10, "size": 10}))
    assert page2 == whole[10:20]


def test_beyond_the_window_the_engine_order_continues(client) -> None:
    body = client.post(
        "/search", json={"query": "hiking", "window": 5, "from": 3, "size": 6}
    ).json()
    flags = [h["reranked"] for h in body["hits"]]
    assert flags[:2] == [True, True] or flags.count(False) >= 1
    tail = [h for h in body["hits"] if not h["reranked"]]
    assert tail and all(h["model_score"] is None for h in tail)
    engine_scores = [h["engine_score"] for h in tail]
    assert engine_scores == sorted(engine_scores, reverse=True)


def test_filters_restrict_candidates(client) -> None:
    body = client.post(
        "/search",
        json={
            "query": "boots",
            "filters": {
                "term": {"category": "Footwear", "in_stock": True},
                "range": {"price": {"gte": 50, "lte": 150}},
            },
        },
    ).json()
    assert body["hits"]
    for hit in body["hits"]:
        src = hit["source"]
        assert src["category"] == "Footwear" and src["in_stock"] is True
        assert 50 <= src["price"] <= 150


def test_second_identical_request_is_served_from_cache(client) -> None:
    first = client.post("/search", json={"query": "yoga mat", "window": 30}).json()
    second = client.post("/search", json={"query": "yoga mat", "window": 30}).json()
    assert first["cache"]["misses"] == first["window"] and first["cache"]["hits"] == 0
    assert second["cache"] == {"status": "ok", "hits": second["window"], "misses": 0}
    assert ids_of(first) == ids_of(second)


def ids_of(body) -> list[str]:
    return [h["id"] for h in body["hits"]]


def test_instruction_is_part_of_the_cache_key(client) -> None:
    client.post("/search", json={"query": "dog food", "window": 10})
    other = client.post(
        "/search", json={"query": "dog food", "window": 10, "instruction": "Rank pet products."}
    ).json()
    assert other["cache"]["hits"] == 0


def test_deadline_too_short_falls_back_to_engine_order(client) -> None:
    body = client.post(
        "/search",
        json={
            "query": f"coffee grinder burr {uuid.uuid4().hex[:8]}",
            "timeout_ms": 1,
            "window": 50,
        },
    ).json()
    assert body["rerank_status"] == "fallback"
    assert "deadline" in body["reason"]
    engine_scores = [h["engine_score"] for h in body["hits"]]
    assert engine_scores == sorted(engine_scores, reverse=True)


def test_image_query_with_text_only_scorer_is_a_clear_422(client) -> None:
    r = client.post("/search", json={"query": {"image_url": "https://img.example/a.jpg"}})
    assert r.status_code == 422 and r.json()["field"] == "query.text"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"query": ""}, 422, "query"),
        ({"query": "   "}, 422, "query"),
        ({"query": 5}, 422, "query"),
        ({}, 422, "query"),
        ({"query": "x", "size": -1}, 422, "size"),
        ({"query": "x", "size": 101}, 422, "size"),
        ({"query": "x", "window": 0}, 422, "window"),
        ({"query": "x", "window": 10_000}, 422, "window"),
        ({"query": "x", "from": 995, "size": 10}, 422, "from"),
        ({"query": "x", "timeout_ms": 999_999}, 422, "timeout_ms"),
        ({"query": "x", "index": "nope"}, 404, "index"),
        ({"query": "x", "filters": {"term": {"nofield": 1}}}, 422, "filters.term.nofield"),
        ({"query": "x", "filters": {"range": {"price": {}}}}, 422, "filters.range.price"),
        ({"query": "x", "filters": {"range": {"brand": {"gte": 1}}}}, 400, "filters.range.brand"),
        ({"query": "x", "filters": {"term": {"price": "cheap"}}}, 400, "filters.term.price"),
        ({"query": "x", "bogus": 1}, 422, "bogus"),
        ({"query": "x", "rules": "nope"}, 422, "rules"),
    ],
)
def test_bad_input_names_field_and_reason(client, body, status, field) -> None:
    r = client.post("/search", json=body)
    assert r.status_code == status, r.json()
    payload = r.json()
    assert payload["field"] == field and payload["message"]


def test_malformed_json_is_a_422(client) -> None:
    r = client.post("/search", content=b'{"query": ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"
    assert "malformed JSON" in r.json()["message"]


def test_a_field_map_id_that_repeats_keeps_every_hit(client_factory) -> None:
    # fields.id pointing at a shared field (brand) gives many hits the same document id;
    # each engine hit must still appear once, with its own source.
    c = client_factory(fields={"id": "brand"})
    body = c.post(
        "/search", json={"query": "hiking boots", "size": 30, "timeout_ms": 30_000}
    ).json()
    titles = [h["source"]["title"] for h in body["hits"]]
    assert len(titles) == len(set(titles)) == len(body["hits"]) > 5
    assert len({h["id"] for h in body["hits"]}) < len(body["hits"])  # ids do repeat
    # which the vector leg cannot be fused by: the search stays lexical and says why
    assert body["retrieval"]["mode"] == "lexical"
    assert body["retrieval"]["reason"].startswith("ids repeat within a leg")
