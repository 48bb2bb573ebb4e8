"""The hybrid first stage on the embedded engine (sidecar.retrieval): a need-style query finds
what the lexical leg misses, filters hold on both legs, the off-switch and the per-request
override, /readyz's account, a failing vector leg, and the engines' k-NN bodies."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sidecar.api.drop_in.search_request import to_search_request
from sidecar.backends import dsl
from sidecar.backends.base import Filter, Hit, RangeFilter, SearchResult, TermFilter
from sidecar.backends.embedded import EmbeddedBackend
from sidecar.config import HybridSettings
from sidecar.deadline import Deadline
from sidecar.errors import EngineTimeout
from sidecar.retrieval import Retriever
from sidecar.scoring.minilm import MiniLMScorer

# Lexical search matches "shoes" and "let" and "in"; none of its top 10 keeps water out.
NEED = "shoes that don't let puddles in"


def waterproof_footwear(hit: Mapping[str, Any]) -> bool:
    title = str(hit["source"]["title"]).lower()
    return "waterproof" in title and ("boot" in title or "shoe" in title)


@pytest.fixture
def hybrid(client_factory: Any) -> TestClient:
    client: TestClient = client_factory(hybrid={"enabled": True})
    return client


def first_stage(client: TestClient, query: str, **extra: Any) -> dict[str, Any]:
    body = {"query": query, "window": 10, "size": 10, "explain": True, **extra}
    answer: dict[str, Any] = client.post("/search", json=body).json()
    return answer


def test_a_need_finds_waterproof_footwear_the_lexical_window_lacks(hybrid: TestClient) -> None:
    lexical = first_stage(hybrid, NEED, retrieval="lexical")
    fused = first_stage(hybrid, NEED)
    assert lexical["retrieval"] == {"mode": "lexical", "reason": "lexical was asked for"}
    assert fused["retrieval"] == {"mode": "hybrid", "reason": ""}
    assert sum(map(waterproof_footwear, lexical["hits"])) == 0
    found = [h for h in fused["hits"] if waterproof_footwear(h)]
    assert len(found) >= 3
    # each hit says where it stood in each leg; the new ones came from the vector leg alone
    assert any(set(h["explain"]["retrieval"]) == {"vector"} for h in found)
    for hit in fused["hits"]:
        for place in hit["explain"]["retrieval"].values():
            assert place["rank"] >= 1
    assert fused["timings"]["vector_ms"] > 0 and "lexical_ms" in fused["timings"]


def test_filters_hold_on_both_legs(hybrid: TestClient) -> None:
    body = first_stage(hybrid, NEED, window=40, size=40, filters={"range": {"price": {"lte": 30}}})
    assert body["retrieval"]["mode"] == "hybrid"
    assert body["hits"] and all(h["source"]["price"] <= 30 for h in body["hits"])
    legs = [set(h["explain"]["retrieval"]) for h in body["hits"]]
    assert {"vector"} in legs  # the vector leg found some, within the filter too


def test_on_by_default_and_a_request_or_the_settings_can_turn_it_off(
    client: TestClient, client_factory: Any
) -> None:
    default = first_stage(client, NEED)
    assert default["retrieval"] == {"mode": "hybrid", "reason": ""}
    asked = first_stage(client, NEED, retrieval="lexical")
    assert asked["retrieval"] == {"mode": "lexical", "reason": "lexical was asked for"}
    assert all("retrieval" not in h["explain"] for h in asked["hits"])
    off: TestClient = client_factory(hybrid={"enabled": False})
    assert first_stage(off, NEED)["retrieval"] == {"mode": "lexical", "reason": "hybrid is off"}
    assert first_stage(off, NEED, retrieval="hybrid")["retrieval"]["mode"] == "hybrid"
    refused = client.post("/search", json={"query": NEED, "retrieval": "vectors"})
    assert refused.status_code == 422


def test_readyz_says_whether_the_vector_leg_can_run(hybrid: TestClient) -> None:
    hybrid_part = hybrid.get("/readyz").json()["hybrid"]
    assert hybrid_part["enabled"] is True
    assert hybrid_part["status"] == "available"


def test_an_index_without_vectors_stays_lexical_and_says_why(client_factory: Any) -> None:
    client: TestClient = client_factory(hybrid={"enabled": True})
    backend = client.app.state.services.backend  # type: ignore[attr-defined]
    backend.add_index("bare", [{"id": "1", "title": "Waterproof boots"}])
    body = client.post("/search", json={"query": "boots", "index": "bare"}).json()
    assert body["retrieval"]["mode"] == "lexical"
    assert body["retrieval"]["reason"].startswith("index 'bare' holds no vectors")
    assert [h["id"] for h in body["hits"]] == ["1"]


def test_the_drop_in_keeps_the_callers_query_unless_asked(hybrid: TestClient) -> None:
    services = hybrid.app.state.services  # type: ignore[attr-defined]
    plain, _ = to_search_request("products", {"query": {"match": {"title": NEED}}}, services)
    assert plain.retrieval == "lexical"
    asked, _ = to_search_request(
        "products",
        {"query": {"match": {"title": NEED}}, "ext": {"rerank": {"retrieval": "hybrid"}}},
        services,
    )
    assert asked.retrieval == "hybrid"


# -- the embedded engine's vector leg, without a model ----------------------------------------

DOCS = [
    {"id": "a", "title": "red boots", "price": 10},
    {"id": "b", "title": "blue boots", "price": 50},
    {"id": "c", "title": "green hat", "price": 20},
]
VECTORS = [[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]]


def embedded() -> EmbeddedBackend:
    backend = EmbeddedBackend({"title": 1.0})
    backend.add_index("p", DOCS)
    backend.set_vectors("p", VECTORS)
    return backend


async def test_the_embedded_vector_leg_is_exact_and_filtered() -> None:
    backend = embedded()
    found = await backend.vector_search("p", [1.0, 0.1], [], 3, Deadline.after(1), "v", 10)
    assert [h.id for h in found.hits] == ["a", "b", "c"]
    cheap = [RangeFilter("price", lte=20)]
    found = await backend.vector_search("p", [0.6, 0.8], cheap, 3, Deadline.after(1), "v", 10)
    assert [h.id for h in found.hits] == ["c", "a"] and found.total == 2
    none = [TermFilter("id", ("zzz",))]
    assert (await backend.vector_search("p", [1, 0], none, 3, Deadline.after(1), "v", 1)).hits == []
    assert await backend.vector_field("p", "v", 2) is None
    assert "2 dimensions, not 3" in str(await backend.vector_field("p", "v", 3))


class _FailingVectors(EmbeddedBackend):
    async def vector_search(self, *args: Any, **kwargs: Any) -> SearchResult:
        raise EngineTimeout("knn did not answer", engine="embedded")


async def test_a_failing_vector_leg_costs_its_hits_not_the_answer(minilm: MiniLMScorer) -> None:
    backend = _FailingVectors({"title": 1.0})
    backend.add_index("p", DOCS)
    backend.set_vectors("p", [[1.0] * minilm.dimensions] * len(DOCS))
    retriever = Retriever(backend, minilm, HybridSettings(enabled=True))
    got = await retriever.search("p", "boots", [], 10, Deadline.after(5))
    assert got.retrieval == "lexical"
    assert got.reason == "the vector leg failed: knn did not answer"
    assert {h.id for h in got.result.hits} == {"a", "b"}


class _StalledVectors(EmbeddedBackend):
    """A k-NN search that stalls past any deadline (as a busy engine's would)."""

    async def vector_search(self, *args: Any, **kwargs: Any) -> SearchResult:
        await asyncio.sleep(30)
        raise AssertionError("not reached")


async def test_a_vector_leg_past_the_engine_deadline_costs_its_hits_in_time(
    minilm: MiniLMScorer,
) -> None:
    backend = _StalledVectors({"title": 1.0})
    backend.add_index("p", DOCS)
    backend.set_vectors("p", [[1.0] * minilm.dimensions] * len(DOCS))
    retriever = Retriever(backend, minilm, HybridSettings(enabled=True))
    started = time.perf_counter()
    got = await retriever.search("p", "boots", [], 10, Deadline.after(0.2))
    assert time.perf_counter() - started < 0.2 + 0.05
    assert got.retrieval == "lexical"
    assert got.reason == "the vector leg failed: timed out"
    assert {h.id for h in got.result.hits} == {"a", "b"}


async def test_the_query_vector_is_the_one_scoring_reads(minilm: MiniLMScorer) -> None:
    text = "a query seen once by the vector leg"
    vector = await minilm.embed_query(text)
    assert minilm._queries.get(text) is not None  # the scorer's own cache: no second encode
    assert len(vector) == minilm.dimensions


# -- the engines' bodies -------------------------------------------------------------------------


def test_elasticsearch_knn_body_filters_inside_knn() -> None:
    filters: Sequence[Filter] = [TermFilter("brand", ("x",))]
    body = dsl.knn_body_elasticsearch([0.1, 0.2], filters, 50, "embedding", 20, ["title"])
    assert body["knn"] == {
        "field": "embedding",
        "query_vector": [0.1, 0.2],
        "k": 50,
        "num_candidates": 50,  # at least k
        "filter": [{"term": {"brand": "x"}}],
    }
    assert body["size"] == 50 and body["_source"] == ["title"]


def test_opensearch_knn_body_filters_inside_knn() -> None:
    filters: Sequence[Filter] = [RangeFilter("price", lte=9)]
    body = dsl.knn_body_opensearch([0.5], filters, 7, "embedding", ["title"])
    assert body["query"]["knn"]["embedding"] == {
        "vector": [0.5],
        "k": 7,
        "filter": {"bool": {"filter": [{"range": {"price": {"lte": 9}}}]}},
    }


@pytest.mark.parametrize(
    ("mapping", "problem"),
    [
        ({"p": {"mappings": {"e": {"mapping": {"e": {"type": "dense_vector", "dims": 4}}}}}}, None),
        ({"p": {"mappings": {}}}, "index 'p' has no vector field 'e'"),
        ({"p": {"mappings": {"e": {"mapping": {"e": {"type": "float"}}}}}}, "is 'float'"),
        (
            {"p": {"mappings": {"e": {"mapping": {"e": {"type": "dense_vector", "dims": 3}}}}}},
            "3 dim",
        ),
        ({}, "no index answered"),
    ],
)
def test_the_vector_field_check_reads_the_field_mapping(
    mapping: dict[str, Any], problem: str | None
) -> None:
    found = dsl.vector_field_problem(mapping, "e", 4, "dense_vector")
    assert found is None if problem is None else problem in str(found)


def test_hits_carry_no_legs_unless_fused() -> None:
    assert Hit("a", 1.0, {}).legs == {}


def test_a_query_the_model_cannot_read_stays_lexical(client: TestClient) -> None:
    # an English model's vector of a Chinese query is noise: fused, it pushed the commuter
    # bags that fit an iPad out of the first page
    body = first_stage(client, "能装下iPad的通勤包")
    assert body["retrieval"]["mode"] == "lexical"
    assert "does not read Han script" in body["retrieval"]["reason"]
    english = first_stage(client, "commuter bag that fits an iPad")
    assert english["retrieval"] == {"mode": "hybrid", "reason": ""}
