"""Chinese demo queries through /search on the embedded default, Elasticsearch and OpenSearch.

The first stage finds the Chinese products on every engine; the CPU default (English MiniLM)
cannot read the queries, so /search keeps the engine's order and says so. Expected figures are
the floors under what `python -m bench.chinese_queries` measured (0.77 embedded, 0.81
Elasticsearch, 0.80 OpenSearch precision@10; every relevant product in the window).
"""

from __future__ import annotations

import statistics
import uuid
from typing import Any

import httpx
import pytest

from es_integration.templates import PRODUCTS_CJK_TEMPLATE, PRODUCTS_TEMPLATE
from sidecar.backends.indexing import create_product_index, engine_client
from sidecar.config import EngineSettings
from sidecar.demo import load_queries_zh
from sidecar.writing_systems import unreadable_script

ENGINE_FIELDS = {"title": 3.0, "selling_points": 1.5, "brand.text": 2.0, "category.text": 1.0}


def check_families(client: Any) -> list[float]:
    """Each Chinese family's precision@10 through /search, asserting what every one must show."""
    precision = []
    for family in load_queries_zh():
        body = client.post("/search", json={"query": family["query"], "size": 100}).json()
        ids = [hit["id"] for hit in body["hits"]]
        relevant = set(family["relevant_ids"])
        assert relevant <= set(ids), (family["query"], sorted(relevant - set(ids)))
        precision.append(len(relevant & set(ids[:10])) / 10)
        if unreadable_script(family["query"], ["en"]) is None:
            # "iPhone 15 Pro Max 手机壳": mostly Latin letters, which MiniLM reads
            assert body["rerank_status"] == "ok", family["query"]
            continue
        assert body["rerank_status"] == "fallback", family["query"]
        assert "does not read Han script" in body["reason"]
        scores = [hit["engine_score"] for hit in body["hits"]]
        assert scores == sorted(scores, reverse=True)  # the engine's order, kept
    return precision


def test_the_embedded_default_finds_chinese_products(client: Any) -> None:
    precision = check_families(client)
    assert statistics.fmean(precision) >= 0.7 and min(precision) >= 0.5, precision


@pytest.mark.engine
def test_the_engines_find_chinese_products(engine: tuple[str, str], client_factory: Any) -> None:
    kind, url = engine
    app = client_factory(engine={"kind": kind, "urls": [url], "search_fields": ENGINE_FIELDS})
    precision = check_families(app)
    assert statistics.fmean(precision) >= 0.75 and min(precision) >= 0.5, precision


def has_cjk_analyzer(url: str) -> bool:
    answer = httpx.post(
        f"{url}/_analyze", json={"analyzer": "cjk", "text": "牛仔"}, trust_env=False, timeout=10
    )
    return answer.status_code == 200


@pytest.mark.engine
def test_the_product_index_is_created_from_the_template_the_engine_can_run(
    engine: tuple[str, str],
) -> None:
    kind, url = engine
    if kind == "opensearch":  # its integ-test-zip has analysis-common
        assert has_cjk_analyzer(url)
    index = f"zh-template-{uuid.uuid4().hex[:8]}"
    with engine_client(EngineSettings(urls=[url])) as http:
        try:
            created, template, note = create_product_index(http, index)
            assert created and note
            mapping = http.get(f"/{index}/_mapping").json()[index]["mappings"]["properties"]
            if has_cjk_analyzer(url):
                assert template == PRODUCTS_CJK_TEMPLATE
                assert mapping["title"]["fields"]["cjk"]["analyzer"] == "cjk"
                tokens = http.post(
                    f"/{index}/_analyze", json={"field": "title.cjk", "text": "复古风牛仔外套"}
                ).json()["tokens"]
                assert [t["token"] for t in tokens] == [
                    "复古",
                    "古风",
                    "风牛",
                    "牛仔",
                    "仔外",
                    "外套",
                ]
            else:  # Elasticsearch's integ-test-zip: no analysis-common
                assert template == PRODUCTS_TEMPLATE and "fields" not in mapping["title"]
                tokens = http.post(
                    f"/{index}/_analyze", json={"field": "title", "text": "牛仔外套"}
                ).json()["tokens"]
                assert [t["token"] for t in tokens] == ["牛", "仔", "外", "套"]
        finally:
            http.delete(f"/{index}")


@pytest.mark.engine
def test_the_loaded_demo_index_has_the_cjk_sub_fields_where_the_engine_can(
    engine: tuple[str, str],
) -> None:
    _, url = engine
    answer = httpx.get(f"{url}/products/_mapping", trust_env=False, timeout=10).json()
    title = answer["products"]["mappings"]["properties"]["title"]
    assert ("cjk" in title.get("fields", {})) == has_cjk_analyzer(url)
