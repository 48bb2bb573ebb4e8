"""The demo catalog's additions of issue 25: the seed's example needs (vintage denim jacket,
petite dress, watermelon perfume, a practical gift for mom, a commuter bag for an iPad) in both
languages, appended after the first catalog; and a product type on every product."""

from __future__ import annotations

import json

import pytest

from sidecar.demo import PRODUCT_TYPES_PATH, load_catalog, load_queries, load_queries_zh
from sidecar.product_types import load

FIRST_CATALOG = 1218  # products p00001..p01218 were there before the additions

EXAMPLES_EN = {
    "vintage denim jacket": "denim jacket",
    "dress that makes a petite woman look taller": "dress",
    "watermelon scented perfume": "perfume",
    "practical birthday gift for mom": "heated blanket",
    "commuter bag that fits an ipad": "commuter bag",
}
EXAMPLES_ZH = {
    "复古风牛仔外套": "denim jacket",
    "适合小个子女生的显高连衣裙": "dress",
    "西瓜味香水": "perfume",
    "送妈妈的实用生日礼物": "heated blanket",
    "能装下iPad的通勤包": "commuter bag",
}


@pytest.fixture(scope="module")
def catalog() -> list[dict]:
    return load_catalog()


def test_the_first_catalog_is_untouched_and_the_additions_come_after(catalog):
    ids = [p["id"] for p in catalog]
    assert ids[:FIRST_CATALOG] == [f"p{n:05d}" for n in range(1, FIRST_CATALOG + 1)]
    assert len(catalog) > FIRST_CATALOG + 100
    added = catalog[FIRST_CATALOG:]
    # English additions first, then the Chinese ones
    chinese = [any("\u4e00" <= c <= "\u9fff" for c in p["title"]) for p in added]
    assert chinese == sorted(chinese) and any(chinese) and not all(chinese)


@pytest.mark.parametrize(
    ("families", "examples"), [(load_queries, EXAMPLES_EN), (load_queries_zh, EXAMPLES_ZH)]
)
def test_the_seeds_examples_have_products_of_their_type_and_near_misses(
    catalog, families, examples
):
    by_id = {p["id"]: p for p in catalog}
    by_query = {f["query"]: f for f in families()}
    for query, kind in examples.items():
        family = by_query[query]
        relevant = [by_id[i] for i in family["relevant_ids"]]
        assert len(relevant) >= 8, query
        assert {p["product_type"] for p in relevant} == {kind}, query
        assert len(family["near_miss_ids"]) >= 2, query


def test_every_product_type_is_in_the_vocabulary(catalog):
    matcher = load(PRODUCT_TYPES_PATH)
    used = {p["product_type"] for p in catalog}
    assert used <= set(matcher.types)
    # every accessory or consumable in the vocabulary serves a type some product has
    for t in matcher.types.values():
        assert set(t.accessory_of) <= used, t.name
    # the demo has accessories to put after their products
    assert sum(matcher.role(p["product_type"]) != "product" for p in catalog) >= 80


def test_the_query_families_name_their_products_type(catalog):
    """The matcher recognises, from the catalog's own type names, the type of the products each
    product-naming family asks for (the families that name a need, such as a gift, excepted)."""
    matcher = load(PRODUCT_TYPES_PATH)
    by_id = {p["id"]: p for p in catalog}
    needs = {"practical birthday gift for mom", "送妈妈的实用生日礼物", "办公室绿植 好养不死"}
    for family in [*load_queries(), *load_queries_zh()]:
        if family["query"] in needs:
            continue
        named = matcher.recognise(family["query"])
        kinds = {by_id[i]["product_type"] for i in family["relevant_ids"]}
        assert named is not None and named.name in kinds, (family["query"], named, kinds)


def test_vocabulary_file_is_json_with_types():
    data = json.loads(PRODUCT_TYPES_PATH.read_text(encoding="utf-8"))
    assert len(data["types"]) > 100
