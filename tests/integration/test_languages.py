"""A scorer says which languages it reads, and a query it cannot read gets no confident order:
/search keeps the engine's order with `fallback` and the reason, the rerank APIs flag every
result (or refuse with 422 when strict). The CPU default reads English only."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from sidecar.app import create_app
from tests.conftest import make_settings

SEED_BATCH = {
    # the seed's own example: the English MiniLM ranks the kettle above the monstera
    "query": "办公室绿植，好养不死",
    "documents": [
        "龟背竹盆栽 室内绿植",
        "虎皮兰绿植 耐阴好养",
        "发财树小型盆栽",
        "不锈钢电热水壶 1.7L",
    ],
}


def test_readiness_says_what_the_scorer_reads(client: Any) -> None:
    assert client.get("/readyz").json()["model"]["languages"] == ["en"]


def test_search_keeps_the_engine_order_for_a_query_the_scorer_cannot_read(client: Any) -> None:
    body = client.post("/search", json={"query": "复古风牛仔外套 vintage denim jacket 男"}).json()
    assert body["rerank_status"] == "ok"  # mostly Latin letters: read and reranked
    body = client.post("/search", json={"query": "复古风牛仔外套"}).json()
    assert body["rerank_status"] == "fallback"
    assert "does not read Han script" in body["reason"] and "all-MiniLM-L6-v2" in body["reason"]


def test_the_rerank_apis_flag_every_result_of_an_unreadable_query(client: Any) -> None:
    body = client.post("/api/rerank", json=SEED_BATCH).json()
    assert len(body["results"]) == 4
    assert all(any("unreadable_script" in f for f in r["flags"]) for r in body["results"])
    v1 = client.post("/v1/rerank", json=SEED_BATCH).json()
    assert len(v1["meta"]["flags"]) == 4 and v1["meta"]["languages"] == ["en"]
    english = client.post("/api/rerank", json={"query": "boots", "documents": ["boots"]}).json()
    assert english["results"][0]["flags"] == []


def app_with(scorer: Any = None, **scorer_settings: Any) -> TestClient:
    settings = make_settings(scorer=scorer_settings)
    return TestClient(create_app(settings, wait_for_model=True, scorer=scorer))


def test_strict_languages_refuse_with_the_field(minilm: Any) -> None:
    with app_with(minilm, strict_languages=True) as strict:
        r = strict.post("/api/rerank", json=SEED_BATCH)
    assert r.status_code == 422 and r.json()["field"] == "query.text"
    assert "Han" in r.json()["message"]


def test_a_declared_language_is_trusted() -> None:
    # A user who brings a multilingual model folder declares it (scorer.languages); the bundled
    # model is not one, but the declaration is what the check reads.
    with app_with(languages=["en", "zh"]) as told:
        assert told.get("/readyz").json()["model"]["languages"] == ["en", "zh"]
        body = told.post("/api/rerank", json=SEED_BATCH).json()
    assert all(r["flags"] == [] for r in body["results"])


def test_an_unknown_language_code_is_a_settings_error() -> None:
    import pytest
    from pydantic import ValidationError

    from sidecar.config import Settings

    with pytest.raises(ValidationError, match="unknown xx"):
        Settings(scorer={"languages": ["xx"]})


def test_a_multilingual_model_folder_the_user_brings_is_scored_on_chinese(
    tmp_path_factory: Any,
) -> None:
    """`scorer.model_path` at any sentence-transformers folder, with its language declaration:
    here a tiny random BERT built at test time with its own tokenizer (not the bundled model)."""
    from tests.fixtures.tiny_sbert import build_tiny_sbert

    folder = build_tiny_sbert(tmp_path_factory.mktemp("tiny-sbert"))
    settings = make_settings(scorer={"model_path": str(folder), "languages": ["en", "zh"]})
    with TestClient(create_app(settings, wait_for_model=True)) as own:
        ready = own.get("/readyz").json()["model"]
        assert ready["ready"] and ready["languages"] == ["en", "zh"]
        assert ready["model"].startswith("all-MiniLM-L6-v2@")  # the folder's name is in the id
        body = own.post("/api/rerank", json=SEED_BATCH).json()
        search = own.post("/search", json={"query": "防水登山靴"}).json()
    assert body["rerank_status"] == "ok" and len(body["results"]) == 4
    assert all(r["flags"] == [] for r in body["results"])
    assert search["rerank_status"] != "fallback" or "does not read" not in search["reason"]
