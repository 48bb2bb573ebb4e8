"""Product types and query families of the demo catalog (README.md), read from taxonomy.json
(the English store) and taxonomy_zh.json (its Chinese slice).

It is pure data, so it lives in files: thousands of lines of strings diff and review better
as JSON than as Python literals, and other tools can read it without running Python."""

import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class ProductType:  # a kind of product; the generator makes `count` of them
    key: str
    category: str
    count: int
    price: tuple[float, float]  # low, high
    colors: tuple[str, ...]
    titles: tuple[str, ...]  # str.format templates over {brand}, {color} and slot names
    points: tuple[str, ...]  # templates too; slot values are drawn once per product
    slots: dict[str, tuple[str, ...]]
    brands: tuple[str, ...]  # empty: the category's brands
    product_type: str  # a name of product_types.json: what kind of product it makes
    # 1: the first catalog; 2: the types added later (the seed's examples), numbered after
    # every type of batch 1, so adding them moved no id
    batch: int = 1


@dataclass(frozen=True)
class QueryFamily:  # a shopper query, the types that match it and lexically close wrong ones
    query: str
    category: str
    relevant: tuple[str, ...]  # all in `category`
    near_miss: tuple[str, ...]


@dataclass(frozen=True)
class Slice:  # the products and queries of one language, generated from one file
    language: str  # ISO 639-1
    category_brands: MappingProxyType[str, tuple[str, ...]]  # ordered: generation order
    types: tuple[ProductType, ...]
    queries: tuple[QueryFamily, ...]
    # English colour name (the `color` field, which paints the image) -> the name titles show
    color_names: MappingProxyType[str, str]


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        Path(__file__).with_name(name).read_text(encoding="utf-8"),
        object_hook=lambda obj: {k: tuple(v) if isinstance(v, list) else v for k, v in obj.items()},
    )
    return data


def _slice(language: str, data: dict[str, Any]) -> Slice:
    return Slice(
        language=language,
        category_brands=MappingProxyType(data["category_brands"]),
        types=tuple(ProductType(**t) for t in data["types"]),
        queries=tuple(QueryFamily(**q) for q in data["queries"]),
        color_names=MappingProxyType(data.get("color_names", {})),
    )


ENGLISH = _slice("en", _load("taxonomy.json"))
# Chinese titles and selling points in the same 15 categories; its `color` values are the
# English names (one facet for the whole store), its titles say the colour in Chinese.
CHINESE = _slice("zh", _load("taxonomy_zh.json"))
SLICES = (ENGLISH, CHINESE)  # generation order: English ids first, unchanged
