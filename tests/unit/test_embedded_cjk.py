"""The embedded engine finds Chinese (and Japanese, Korean) products: the CJK twin fields."""

from __future__ import annotations

import asyncio
import statistics

import pytest

from sidecar.backends.base import TermFilter
from sidecar.backends.embedded import EmbeddedBackend
from sidecar.deadline import Deadline
from sidecar.demo import CATALOG_PATH, load_queries_zh
from sidecar.query import Normalizer

FIELDS = {"title": 3.0, "selling_points": 1.5, "brand": 2.0}
DOCS = [
    {
        "id": "jacket",
        "title": "北境 复古风牛仔外套 男款 水洗做旧",
        "brand": "北境",
        "in_stock": True,
    },
    {"id": "jeans", "title": "北境 复古风牛仔裤 直筒宽松", "brand": "北境", "in_stock": True},
    {"id": "boots", "title": "山野行 防水登山靴 真皮中帮", "brand": "山野行", "in_stock": False},
    {"id": "case", "title": "苹果iPhone15手机壳 透明", "brand": "护甲", "in_stock": True},
    {"id": "shoes", "title": "ランニングシューズ 軽量", "brand": "Kaze", "in_stock": True},
    {"id": "hiking", "title": "방수 등산화 남성용", "brand": "Sanak", "in_stock": True},
    {"id": "english", "title": "Waterproof hiking boots", "brand": "TrailPeak", "in_stock": True},
]


@pytest.fixture(scope="module")
def backend() -> EmbeddedBackend:
    b = EmbeddedBackend(FIELDS)
    b.add_index("products", DOCS)
    return b


def search(b: EmbeddedBackend, text: str, filters=(), window: int = 10) -> tuple[list[str], int]:
    result = asyncio.run(b.search("products", text, list(filters), window, Deadline.after(1.0)))
    return [h.id for h in result.hits], result.total


def test_a_run_of_chinese_characters_is_found_by_its_words(backend) -> None:
    # to the English analyzer the title's "复古风牛仔外套" is one token; a shorter query
    # and a longer one both find it through the characters and pairs
    ids, _ = search(backend, "牛仔外套")
    assert ids[0] == "jacket" and "english" not in ids
    ids, _ = search(backend, "复古风牛仔外套 男")
    assert ids[:2] == ["jacket", "jeans"]  # the jeans share 复古风牛仔, not 外套
    ids, _ = search(backend, "登山靴 防水")
    assert ids[0] == "boots"


def test_a_lone_character_finds_what_holds_it(backend) -> None:
    ids, total = search(backend, "靴")
    assert ids == ["boots"] and total == 1


def test_latin_words_inside_chinese_text_are_words(backend) -> None:
    # "苹果iPhone15手机壳": the English field sees "iphone15" as a word of its own
    ids, _ = search(backend, "iphone15")
    assert ids == ["case"]
    ids, _ = search(backend, Normalizer(["iPhone"]).text("苹果iphone15手机壳"))
    assert ids[0] == "case"


def test_japanese_and_korean_runs_are_cut_too(backend) -> None:
    assert search(backend, "シューズ")[0] == ["shoes"]
    assert search(backend, "ｼｭｰｽﾞ")[0] == ["shoes"]  # half-width kana, as NFKC reads it
    assert search(backend, "등산화")[0] == ["hiking"]


def test_filters_restrict_a_chinese_query(backend) -> None:
    ids, _ = search(backend, "北境 复古风 登山靴", [TermFilter("in_stock", (False,))])
    assert ids == ["boots"]


def test_an_english_query_reads_no_cjk_twin(backend) -> None:
    ids, total = search(backend, "waterproof hiking boots")
    assert ids == ["english"] and total == 1


def test_count_counts_chinese_matches(backend) -> None:
    assert backend.count("products", "牛仔")["count"] == 2


@pytest.fixture(scope="module")
def demo() -> EmbeddedBackend:
    b = EmbeddedBackend({"title": 3.0, "selling_points": 1.5, "brand": 2.0, "category": 1.0})
    b.add_jsonl("products", CATALOG_PATH)
    return b


def test_every_chinese_demo_family_finds_its_products_in_the_window(demo) -> None:
    # the window of 100 holds every relevant product (what a reranker that reads Chinese
    # needs), and the engine's own top 10 is mostly right (what the page shows when the
    # scorer cannot read Chinese): 0.77 measured (python -m bench.chinese_queries)
    normalizer = Normalizer()
    precision = []
    for family in load_queries_zh():
        ids, _ = search(demo, normalizer.text(family["query"]), window=100)
        relevant = set(family["relevant_ids"])
        assert relevant <= set(ids), family["query"]
        precision.append(len(relevant & set(ids[:10])) / 10)
    assert statistics.fmean(precision) >= 0.7, precision
    assert min(precision) >= 0.5, precision
