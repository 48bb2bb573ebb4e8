"""Checks of the bundled demo catalog (sidecar/demo/): the English store and its Chinese slice.

Reads the committed files directly (stdlib only), so it runs without the
sidecar's dependencies. The generator runs in a subprocess as
`python -m sidecar.demo.generate`, the documented way to regenerate.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = REPO_ROOT / "sidecar" / "demo"

FIELD_TYPES = {
    "id": str,
    "title": str,
    "selling_points": list,
    "brand": str,
    "category": str,
    "price": float,
    "sales": int,
    "in_stock": bool,
    "rating": float,
    "color": str,
    "image_url": str,
    "product_type": str,  # added last to every product (issue 25): a name of product_types.json
}

HAS_PILLOW = importlib.util.find_spec("PIL") is not None
# Han characters (the Chinese slice writes nothing else in CJK)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]+")
# The English slice as it was before the Chinese one was added: 926 lines of catalog.jsonl.
ENGLISH_PRODUCTS = 926
ENGLISH_SHA256 = "db70bda92c05607e6b7555bd0cfb8f9dcb3e616d453d3cb429f8cd9dea0d9bf5"
# The catalog before the seed's examples were appended (issue 25): the English slice, then the
# Chinese one; the products after it are the added batch, English then Chinese.
FIRST_CATALOG = 1218
COLOR_NAMES = {  # the `color` values generate.py paints images with
    "Beige", "Black", "Blue", "Brown", "Charcoal", "Clear", "Gray", "Green", "Navy", "Olive",
    "Orange", "Pink", "Purple", "Red", "Silver", "Tan", "Teal", "White", "Yellow",
}  # fmt: skip


def _load_catalog() -> list[dict]:
    with open(DEMO_DIR / "catalog.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _load_queries(name: str = "queries.json") -> list[dict]:
    with open(DEMO_DIR / name, encoding="utf-8") as f:
        return json.load(f)


def _chinese(product: dict) -> bool:
    return bool(_HAN.search(product["title"]))


@pytest.fixture(scope="module")
def catalog() -> list[dict]:
    return _load_catalog()


@pytest.fixture(scope="module")
def by_id(catalog) -> dict[str, dict]:
    return {p["id"]: p for p in catalog}


def _generate(out_dir: Path, *extra: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "sidecar.demo.generate", "--out", str(out_dir), *extra],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=300,
    )


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# --- the catalog -----------------------------------------------------------------


def test_catalog_size_and_categories(catalog):
    assert len(catalog) >= 500
    assert len({p["category"] for p in catalog}) >= 10


def _as_first_written(line: str) -> str:
    """A catalog line without the fields added later (product_type), as the generator wrote it
    before they were added."""
    product = json.loads(line)
    product.pop("product_type")
    return json.dumps(product, ensure_ascii=False) + "\n"


def test_english_slice_is_unchanged_and_first(catalog):
    # The Chinese slice has its own random generator and comes after: adding it moved no
    # English product, id or field. A change to the English taxonomy changes this digest.
    # (product_type was added to every product later, last: the rest of each line is the same.)
    lines = (DEMO_DIR / "catalog.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    english = "".join(map(_as_first_written, lines[:ENGLISH_PRODUCTS])).encode()
    assert hashlib.sha256(english).hexdigest() == ENGLISH_SHA256
    assert not any(_chinese(p) for p in catalog[:ENGLISH_PRODUCTS])
    assert all(_chinese(p) for p in catalog[ENGLISH_PRODUCTS:FIRST_CATALOG])


def test_chinese_slice_spans_the_categories_in_chinese(catalog):
    english = [p for p in catalog if not _chinese(p)]
    chinese = [p for p in catalog if _chinese(p)]
    assert len(chinese) >= 150
    # the same store: every English category has Chinese products, and no other category
    assert {p["category"] for p in chinese} == {p["category"] for p in english}
    for p in chinese:
        assert all(_HAN.search(point) for point in p["selling_points"]), p["id"]
        assert _HAN.search(p["brand"]), p["id"]
        # one colour facet for the whole store; the title says it in Chinese where it says it
        assert p["color"] in COLOR_NAMES, p["id"]
        assert p["color"] not in p["title"], p["id"]
    titles = [p["title"] for p in catalog]
    assert len(titles) == len(set(titles))


def test_every_product_has_all_fields_with_right_types(catalog):
    for p in catalog:
        assert set(p) == set(FIELD_TYPES), p["id"]
        for name, expected in FIELD_TYPES.items():
            # bool is a subclass of int: do not let True pass as a sales count.
            assert type(p[name]) is expected, (p["id"], name, p[name])
        assert p["title"] and p["brand"] and p["category"] and p["color"], p["id"]
        assert 2 <= len(p["selling_points"]) <= 5, p["id"]
        assert all(isinstance(s, str) and s for s in p["selling_points"]), p["id"]
        assert p["price"] > 0 and round(p["price"], 2) == p["price"], p["id"]
        assert p["sales"] >= 0, p["id"]
        assert 1.0 <= p["rating"] <= 5.0 and round(p["rating"], 1) == p["rating"], p["id"]
        assert p["image_url"] == f"images/{p['id']}.png", p["id"]


def test_ids_unique_and_sorted(catalog):
    ids = [p["id"] for p in catalog]
    assert len(ids) == len(set(ids))
    assert ids == sorted(ids)
    assert all(re.fullmatch(r"p\d{5}", i) for i in ids)


def test_distributions_look_like_a_shop(catalog):
    sales = [p["sales"] for p in catalog]
    assert sum(s > 1000 for s in sales) >= 3  # a few best sellers
    assert sum(s < 200 for s in sales) > len(sales) / 2  # a long tail
    in_stock = sum(p["in_stock"] for p in catalog) / len(catalog)
    assert 0.8 <= in_stock <= 0.97


def test_image_file_exists_for_every_product(catalog):
    for p in catalog:
        path = DEMO_DIR / p["image_url"]
        assert path.is_file(), path
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


def test_images_are_small(catalog):
    sizes = [(DEMO_DIR / p["image_url"]).stat().st_size for p in catalog]
    assert max(sizes) < 3 * 1024
    assert sum(sizes) < 3 * 1024 * 1024


# --- query families ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["queries.json", "queries_zh.json"])
def test_query_ids_exist_and_relevant_share_the_category(name, by_id):
    queries = _load_queries(name)
    assert len(queries) >= 12
    for q in queries:
        assert q["query"] and q["relevant_ids"] and q["near_miss_ids"], q["query"]
        assert not set(q["relevant_ids"]) & set(q["near_miss_ids"]), q["query"]
        for pid in q["relevant_ids"] + q["near_miss_ids"]:
            assert pid in by_id, (q["query"], pid)
        for pid in q["relevant_ids"]:
            assert by_id[pid]["category"] == q["category"], (q["query"], pid)


_TOKEN = re.compile(r"[a-z0-9]+")


def _tokens(text: str) -> list[str]:
    """Latin words, and each Han run's characters and pairs (the embedded engine's CJK cut)."""
    text = text.lower()
    runs = _HAN_RUN.findall(text)
    pairs = [run[i : i + 2] for run in runs for i in range(len(run) - 1)]
    return _TOKEN.findall(text) + [c for run in runs for c in run] + pairs


def _bm25_ranking(catalog: list[dict], query: str, k1: float = 1.2, b: float = 0.75) -> list[str]:
    """Ids by plain BM25 over title, selling points, brand and category,
    roughly what the search engine ranks before the sidecar reranks."""
    docs = {
        p["id"]: _tokens(" ".join([p["title"], *p["selling_points"], p["brand"], p["category"]]))
        for p in catalog
    }
    n = len(docs)
    avg_len = sum(map(len, docs.values())) / n
    df = collections.Counter(t for toks in docs.values() for t in set(toks))
    scores = []
    for pid, toks in docs.items():
        tf = collections.Counter(toks)
        score = 0.0
        for t in _tokens(query):
            if t in tf:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                score += idf * tf[t] * (k1 + 1) / (tf[t] + k1 * (1 - b + b * len(toks) / avg_len))
        if score > 0:
            scores.append((-score, pid))
    return [pid for _, pid in sorted(scores)]


@pytest.mark.parametrize("name", ["queries.json", "queries_zh.json"])
def test_near_misses_compete_with_relevant_products_under_bm25(catalog, name):
    # The point of the demo: lexical retrieval finds the right products but
    # ranks wrong ones among them, so reranking visibly changes the order.
    for q in _load_queries(name):
        ranking = _bm25_ranking(catalog, q["query"])
        top10 = ranking[:10]
        assert set(top10) & set(q["near_miss_ids"]), q["query"]
        assert set(ranking[:20]) & set(q["relevant_ids"]), q["query"]


# --- the generator ----------------------------------------------------------------


def test_committed_json_matches_the_generator(tmp_path):
    # Catches edits to taxonomy.json or generate.py without regenerating.
    # Needs no Pillow: --no-images writes only the JSON files.
    _generate(tmp_path, "--no-images")
    for name in ("catalog.jsonl", "queries.json", "queries_zh.json"):
        assert (tmp_path / name).read_bytes() == (DEMO_DIR / name).read_bytes(), (
            f"{name} is stale: run python -m sidecar.demo.generate"
        )


@pytest.mark.skipif(not HAS_PILLOW, reason="Pillow is not installed; images cannot be generated")
def test_generator_is_deterministic(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    _generate(first)
    _generate(second)
    first_files = _tree_bytes(first)
    assert len([f for f in first_files if f.endswith(".png")]) == len(_load_catalog())
    assert first_files == _tree_bytes(second)
