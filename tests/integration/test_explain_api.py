"""POST /api/explain: leave-one-out fragment deltas for one product."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.scoring.base import ModelState

PRODUCT = {
    "title": "Aquafort Non-Slip Yoga Mat",
    "selling_points": ["Alignment lines", "Ships in a recycled box"],
}


def test_fragments_are_leave_one_out_deltas_sorted_by_impact(client: Any) -> None:
    body = client.post("/api/explain", json={"query": "yoga mat", "product": PRODUCT}).json()
    fragments = body["fragments"]
    # every selling point and every title word, once
    assert sorted((f["kind"], f["index"]) for f in fragments) == [
        ("selling_point", 0),
        ("selling_point", 1),
        ("title_word", 0),
        ("title_word", 1),
        ("title_word", 2),
        ("title_word", 3),
    ]
    assert [abs(f["delta"]) for f in fragments] == sorted(
        (abs(f["delta"]) for f in fragments), reverse=True
    )
    for f in fragments:
        assert f["delta"] == pytest.approx(body["score"] - f["score_without"])
    assert fragments[0]["text"] == "Yoga" and fragments[0]["delta"] > 0.1
    # the score is the same pair score /api/rerank gives for the same document text
    rerank = client.post(
        "/api/rerank",
        json={
            "query": "yoga mat",
            "documents": ["Aquafort Non-Slip Yoga Mat | Alignment lines | Ships in a recycled box"],
        },
    ).json()
    assert body["score"] == pytest.approx(rerank["results"][0]["score"], abs=1e-6)
    assert body["band"] in ("strong", "medium", "weak")


def test_one_batched_scorer_call_and_cache_on_repeat(client: Any) -> None:
    payload = {"query": "hiking boots", "product": PRODUCT}
    first = client.post("/api/explain", json=payload).json()
    second = client.post("/api/explain", json=payload).json()
    assert first["cache"]["misses"] == 7 and second["cache"]["hits"] == 7
    assert first["fragments"] == second["fragments"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"query": "x", "product": {"title": " ", "selling_points": []}}, "product"),
        ({"query": "", "product": PRODUCT}, "query"),
        ({"query": {"image_url": "https://img.example/q.png"}, "product": PRODUCT}, "query.text"),
        (
            {"query": "x", "product": {"title": "a", "selling_points": ["p"] * 33}},
            "product.selling_points",
        ),
        (
            {"query": "x", "product": {"title": "a", "image_url": "https://x/" + "a" * 5000}},
            "product",
        ),
        ({"query": "x", "product": PRODUCT, "timeout_ms": 999_999}, "timeout_ms"),
        ({"query": "x", "product": PRODUCT, "extra": 1}, "extra"),
    ],
)
def test_bad_input_names_the_field(client: Any, payload: dict[str, Any], field: str) -> None:
    r = client.post("/api/explain", json=payload)
    assert r.status_code == 422, r.json()
    assert r.json()["field"] == field


def test_model_not_ready_is_a_503_with_the_reason(client_factory: Any, minilm: Any) -> None:
    class Loading:
        model_id = "loading-model"
        reads_images = False
        state = ModelState(status="loading", progress=0.3)

        async def load(self) -> None:
            return None

        async def close(self) -> None:
            return None

    client = client_factory(scorer=Loading())
    r = client.post("/api/explain", json={"query": "yoga mat", "product": PRODUCT})
    assert r.status_code == 503
    assert r.json()["error"] == "model_not_ready" and r.json()["progress"] == 0.3
