"""The sidecar with `scorer.kind: lychee` (the tiny random Qwen2.5-VL): all four match modes
through /api/rerank and /search, product images from the catalog's paths, a failed image
flagged and scored on its text."""

from __future__ import annotations

import base64
import io
import shutil
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from sidecar.app import create_app
from sidecar.demo import DEMO_DIR
from tests.conftest import make_settings
from tests.fixtures.tiny_qwen import build_tiny_qwen


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    model = build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"))
    images = tmp_path_factory.mktemp("images")
    (images / "images").mkdir()
    for name in ("p00001.png", "p00002.png"):  # copies: a symlink out of the root is refused
        shutil.copy(DEMO_DIR / "images" / name, images / "images" / name)
    (images / "broken.png").write_bytes(b"\x89PNG not really")
    settings = make_settings(
        scorer={"kind": "lychee", "model_path": str(model), "max_pixels": 64 * 28 * 28},
        images={"local_root": str(images)},
    )
    with TestClient(create_app(settings, wait_for_model=True)) as test_client:
        yield test_client


def png_base64() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (250, 120, 0)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_ready_with_the_lychee_model(client: TestClient) -> None:
    body = client.get("/readyz").json()
    assert client.get("/readyz").status_code == 200, body


@pytest.mark.parametrize(
    ("query", "document"),
    [
        ("tent", {"text": "TrailPeak tent"}),  # text -> text
        ({"image_base64": png_base64()}, {"text": "TrailPeak tent"}),  # image -> text
        ("tent", {"image_url": "images/p00002.png"}),  # text -> image
        (  # image + text -> image + text
            {"text": "tent", "image_url": "images/p00001.png"},
            {"text": "TrailPeak tent", "image_url": "images/p00002.png"},
        ),
    ],
)
def test_every_match_mode_scores(client: TestClient, query: object, document: object) -> None:
    answer = client.post("/api/rerank", json={"query": query, "documents": [document, "socks"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"].startswith("lychee-rerank-mm@")
    assert {r["index"] for r in body["results"]} == {0, 1}
    assert all(0.0 <= r["score"] <= 1.0 for r in body["results"])


def test_image_changes_the_score(client: TestClient) -> None:
    def score(document: object) -> float:
        body = client.post("/v1/rerank", json={"query": "tent", "documents": [document]}).json()
        assert body["meta"]["flags"] == {}
        return float(body["results"][0]["relevance_score"])

    with_image = score({"text": "TrailPeak tent", "image": "images/p00002.png"})
    assert with_image != pytest.approx(score({"text": "TrailPeak tent"}), abs=1e-7)


def test_failed_image_is_flagged_scored_on_text_and_not_cached(client: TestClient) -> None:
    documents = [{"text": "tent", "image": "broken.png"}, {"text": "tent"}]
    first = client.post("/v1/rerank", json={"query": "tent", "documents": documents}).json()
    assert first["meta"]["flags"] == {"0": ["image_failed: corrupt: UnidentifiedImageError"]}
    scores = {r["index"]: r["relevance_score"] for r in first["results"]}
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)  # same text, no image: same score
    again = client.post("/v1/rerank", json={"query": "tent", "documents": documents}).json()
    assert again["meta"]["cache_hits"] == 1  # the text-only score of the broken one was not kept


def test_search_reads_catalog_images(client: TestClient) -> None:
    body = client.post("/search", json={"query": "TrailPeak tent", "size": 5, "window": 20}).json()
    assert body["rerank_status"] == "ok", body
    assert len(body["hits"]) == 5
    # Only two catalog images were copied under this app's image root: the others are
    # flagged and scored on their text; the two are read.
    for hit in body["hits"]:
        expected = (
            []
            if hit["id"] in ("p00001", "p00002")
            else [f"image_failed: missing: images/{hit['id']}.png"]
        )
        assert hit["flags"] == expected


def test_failed_query_image_flags_every_pair_and_caches_none(client: TestClient) -> None:
    request = {
        "query": {"text": "tent", "image": "images/nope.png"},
        "documents": ["tent", {"text": "socks", "image": "images/p00001.png"}],
    }
    first = client.post("/v1/rerank", json=request).json()
    flag = "query_image_failed: missing: images/nope.png"
    assert first["meta"]["flags"] == {"0": [flag], "1": [flag]}
    assert client.post("/v1/rerank", json=request).json()["meta"]["cache_hits"] == 0


SEED_BATCH = {
    "query": "办公室绿植，好养不死",
    "documents": [
        "龟背竹盆栽 室内绿植",
        "虎皮兰绿植 耐阴好养",
        "发财树小型盆栽",
        "不锈钢电热水壶 1.7L",
    ],
}


def test_a_scorer_that_reads_chinese_scores_the_seed_batch_unflagged(client: TestClient) -> None:
    assert client.get("/readyz").json()["model"]["languages"] == ["en", "zh"]
    body = client.post("/api/rerank", json=SEED_BATCH).json()
    assert body["rerank_status"] == "ok" and len(body["results"]) == 4
    assert all(r["flags"] == [] for r in body["results"])
