"""Product types and query families of the demo catalog (README.md), read from taxonomy.json.

It is pure data, so it lives in a file: thousands of lines of strings diff and review better
as JSON than as Python literals, and other tools can read it without running Python."""

import json
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType


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


@dataclass(frozen=True)
class QueryFamily:  # a shopper query, the types that match it and lexically close wrong ones
    query: str
    category: str
    relevant: tuple[str, ...]  # all in `category`
    near_miss: tuple[str, ...]


_DATA = json.loads(
    Path(__file__).with_name("taxonomy.json").read_text(encoding="utf-8"),
    object_hook=lambda obj: {k: tuple(v) if isinstance(v, list) else v for k, v in obj.items()},
)
CATEGORY_BRANDS = MappingProxyType(_DATA["category_brands"])  # ordered: generation order
TYPES = tuple(ProductType(**t) for t in _DATA["types"])
QUERIES = tuple(QueryFamily(**q) for q in _DATA["queries"])
