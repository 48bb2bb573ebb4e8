"""The demo as a shopper meets it (issue 25): no query of the demo's query files that the engine
answers gets an empty page; a drop that would empty a page keeps its best hits, flagged; a query
naming a product gets the product before its accessories, and explain says why."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.demo import load_catalog, load_queries, load_queries_zh

QUERIES = [f["query"] for f in (*load_queries(), *load_queries_zh())]
# every product of the window scores below the default threshold (0.4) on the default model
EMPTIED = {
    "query": "dress that makes a short woman look taller",
    "filters": {"term": {"category": "Kitchen"}},
}


@pytest.fixture(scope="module")
def types() -> dict[str, str]:
    return {p["id"]: p["product_type"] for p in load_catalog()}


def test_no_query_of_the_demo_gets_an_empty_page(client: Any) -> None:
    for query in QUERIES:
        body = client.post("/search", json={"query": query, "size": 10}).json()
        if body["total"]:
            assert body["hits"], (query, body["dropped"])


def test_gibberish_gets_no_page_from_the_vector_legs_neighbours(client: Any) -> None:
    # the text search matches nothing; the vector leg's nearest products are all below the
    # drop threshold, and min_results does not bring them back
    body = client.post("/search", json={"query": "qwxzvbn", "size": 10}).json()
    assert body["retrieval"]["mode"] == "hybrid"
    assert body["hits"] == [] and body["dropped"] == body["window"] > 0
    lexical = client.post("/search", json={"query": "qwxzvbn", "retrieval": "lexical"}).json()
    assert lexical["total"] == 0 and lexical["hits"] == []


def test_a_drop_that_empties_the_page_keeps_the_best_three_flagged(client_factory: Any, tmp_path):
    without = tmp_path / "rules.yaml"
    without.write_text("version: 1\ndrop: {below_model_score: 0.4, min_results: 0}\n")
    before = client_factory(rules={"path": str(without), "watch": False})
    empty = before.post("/search", json={**EMPTIED, "size": 10}).json()
    assert empty["total"] > 3 and empty["hits"] == [] and empty["kept_despite_drop"] == 0

    after = client_factory()  # the bundled rules: min_results 3
    body = after.post("/search", json={**EMPTIED, "size": 10, "explain": True}).json()
    assert len(body["hits"]) == 3 and body["kept_despite_drop"] == 3
    assert body["dropped"] == empty["dropped"] - 3
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)
    for hit in body["hits"]:
        assert "kept_by_min_results" in hit["flags"]
        assert hit["model_score"] < 0.4
        kinds = [r["kind"] for r in hit["explain"]["rules"]]
        assert kinds == ["drop", "keep"]
    # the drop-in says the same in its rerank section and on each hit (the embedded engine runs
    # no filters there: a threshold nothing passes empties the page instead)
    strict = tmp_path / "strict.yaml"
    strict.write_text("version: 1\ndrop: {below_model_score: 0.99, min_results: 3}\n")
    drop_in = client_factory(rules={"path": str(strict), "watch": False})
    engine = drop_in.post(
        "/products/_search", json={"query": {"match": {"title": "espresso machine"}}, "size": 10}
    ).json()
    assert engine["rerank"]["kept_despite_drop"] == len(engine["hits"]["hits"]) == 3
    assert engine["rerank"]["dropped"] > 0
    assert all("kept_by_min_results" in h["_rerank"]["flags"] for h in engine["hits"]["hits"])


@pytest.mark.parametrize(
    ("query", "kind"),
    [
        ("waterproof hiking boots", "hiking boots"),
        ("espresso machine", "espresso machine"),
        ("4 person tent", "tent"),
        ("yoga mat", "yoga mat"),
        ("sleeping bag", "sleeping bag"),
    ],
)
def test_a_product_query_shows_the_product_before_its_accessories(
    client: Any, types: dict[str, str], query: str, kind: str
) -> None:
    body = client.post("/search", json={"query": query, "size": 10, "explain": True}).json()
    assert body["query_type"] == kind
    top = body["hits"][0]
    assert types[top["id"]] == kind
    seen = [h["explain"]["product_type"] for h in body["hits"]]
    assert {s["query"] for s in seen} == {kind}
    assert [s["hit"] for s in seen] == [types[h["id"]] for h in body["hits"]]
    # every accessory on the page is below every hit that is not one, and says which rule
    matches = [s["match"] for s in seen]
    if "accessory" in matches:
        first = matches.index("accessory")
        assert set(matches[first:]) == {"accessory"}
        rules = body["hits"][first]["explain"]["rules"]
        assert {k: rules[0][k] for k in ("rule", "kind")} == {
            "rule": "accessories-after-products",
            "kind": "bury",
        }


def test_the_seeds_example_needs_find_what_they_ask_for(client: Any, types) -> None:
    wanted = {
        "vintage denim jacket": "denim jacket",
        "dress that makes a petite woman look taller": "dress",
        "watermelon scented perfume": "perfume",
        "commuter bag that fits an ipad": "commuter bag",
        "复古风牛仔外套": "denim jacket",
        "适合小个子女生的显高连衣裙": "dress",
        "西瓜味香水": "perfume",
        "能装下iPad的通勤包": "commuter bag",
        "送妈妈的实用生日礼物": "heated blanket",
    }
    for query, kind in wanted.items():
        body = client.post("/search", json={"query": query, "size": 3}).json()
        assert kind in {types[h["id"]] for h in body["hits"]}, (query, body["hits"])
