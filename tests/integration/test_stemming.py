"""English stemming where the engine has it, on real engines.

`rerank-sidecar index` creates the product index from products-cjk.json (the `english`
analyzer, and `.cjk` sub-fields) where the engine has the analysis-common module, as
OpenSearch's integ-test-zip does: there "boot" finds the demo products titled "... Boots".
Elasticsearch's integ-test-zip has no analysis-common: the index is created from products.json
and searches as before, "boot" finding "boot" only.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from es_integration.templates import PRODUCTS_CJK_TEMPLATE, PRODUCTS_TEMPLATE
from sidecar.backends import dsl
from sidecar.backends.indexing import LoadReport, index_catalog
from sidecar.config import EngineSettings
from sidecar.demo import CATALOG_PATH, load_catalog

pytestmark = pytest.mark.engine

SEARCH_FIELDS = {"title": 3.0, "selling_points": 1.5, "brand.text": 2.0, "category.text": 1.0}


def titled(word: str) -> set[str]:
    """Ids of the demo products whose title has `word` as a whole word, in any case."""
    pattern = re.compile(rf"\b{word}\b", re.IGNORECASE)
    return {p["id"] for p in load_catalog() if pattern.search(p["title"])}


def has_english_analyzer(url: str) -> bool:
    answer = httpx.post(
        f"{url}/_analyze",
        json={"analyzer": "english", "text": "boots"},
        trust_env=False,
        timeout=10,
    )
    return answer.status_code == 200


def search_ids(url: str, index: str, query: dict[str, Any]) -> set[str]:
    body = {"query": query, "size": 1000, "_source": False}
    answer = httpx.post(f"{url}/{index}/_search", json=body, trust_env=False, timeout=30)
    assert answer.status_code == 200, answer.text
    return {hit["_id"] for hit in answer.json()["hits"]["hits"]}


@pytest.fixture
def demo_index(engine: tuple[str, str]) -> Iterator[tuple[str, LoadReport]]:
    """The demo catalog in a scratch index created as `rerank-sidecar index` creates one."""
    _, url = engine
    index = f"stem-{uuid.uuid4().hex[:8]}"
    report = index_catalog(EngineSettings(urls=[url]), CATALOG_PATH, index=index, progress=False)
    try:
        yield index, report
    finally:
        httpx.delete(f"{url}/{index}", trust_env=False, timeout=30)


def test_boot_finds_the_boots_where_the_engine_stems(
    engine: tuple[str, str], demo_index: tuple[str, LoadReport]
) -> None:
    kind, url = engine
    index, report = demo_index
    assert report.created and not report.failures and report.indexed == len(load_catalog())
    singular, plural = titled("boot"), titled("boots")
    only_plural = plural - singular  # "... Waterproof Hiking Boots": no "boot" in the title
    assert len(singular) >= 10 and len(only_plural) >= 10
    if kind == "opensearch":  # its integ-test-zip has analysis-common
        assert has_english_analyzer(url)
    mapping = httpx.get(f"{url}/{index}/_mapping", trust_env=False, timeout=10).json()
    title = mapping[index]["mappings"]["properties"]["title"]
    found = search_ids(url, index, {"match": {"title": "boot"}})
    if has_english_analyzer(url):
        assert report.template == PRODUCTS_CJK_TEMPLATE and "English stemming" in report.note
        assert title["analyzer"] == "english" and title["fields"]["cjk"]["analyzer"] == "cjk"
        assert found == singular | plural  # and not "booty": porter keeps it apart
        assert search_ids(url, index, {"match": {"title": "boots"}}) == singular | plural
        # the sidecar's own first-stage query finds them too
        body = dsl.build_body("boot", [], 1000, 0, SEARCH_FIELDS, ["title"])
        assert only_plural <= search_ids(url, index, body["query"])
    else:  # Elasticsearch's integ-test-zip: products.json, the standard analyzer
        assert report.template == PRODUCTS_TEMPLATE and "no stemming" in report.note
        assert title == {"type": "text", "analyzer": "standard"}
        assert found == singular and not found & only_plural
        assert search_ids(url, index, {"match": {"title": "boots"}}) == plural


def test_chinese_text_still_reaches_the_cjk_sub_fields(
    engine: tuple[str, str], demo_index: tuple[str, LoadReport]
) -> None:
    _, url = engine
    index, report = demo_index
    pairs = search_ids(url, index, {"match_phrase": {"title.cjk": "登山靴"}})
    if report.template == PRODUCTS_CJK_TEMPLATE:
        zh = {p["id"] for p in load_catalog() if "登山靴" in p["title"]}
        assert zh and pairs == zh
    else:
        assert not pairs  # no `.cjk` sub-field: it matches nothing
