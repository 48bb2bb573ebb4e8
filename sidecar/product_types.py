"""Product types: what kind of thing a product is, and which kind a query names.

A catalog's types are a small vocabulary (a JSON file: `product_types.path`, the bundled demo's by
default), each type with its synonyms and its role: a `product`, or an `accessory` or
`consumable` of other types (`accessory_of`: a waterproofing spray serves hiking boots, a
descaler an espresso machine). Every product names its type in a `_source` field
(`fields.product_type`).

`TypeMatcher` is built once from that vocabulary at start-up and recognises the type a query
names from the catalog's own type names and synonyms, no list per query: the longest name found
in the query wins, and of two as long the one that ends later (the head of an English or Chinese
noun phrase comes last: "cat litter box" names a litter box, not cat litter). Latin words are
compared singular ("boots" finds "hiking boot"); Chinese names are found as substrings.

The rules read what comes of it per hit (`type_match`: `same`, `accessory`, `other`), so a
merchandiser decides in YAML what an accessory of the named product costs (docs/rules.md).
Pure: no I/O but `load`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Role = Literal["product", "accessory", "consumable"]
ROLES: tuple[Role, ...] = ("product", "accessory", "consumable")

_WORD = re.compile(r"[0-9a-z]+(?:'[a-z]+)?")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


@dataclass(frozen=True, slots=True)
class ProductType:
    """One type of the catalog's vocabulary."""

    name: str
    synonyms: tuple[str, ...] = ()
    role: Role = "product"
    accessory_of: tuple[str, ...] = ()  # the types this one serves (accessories, consumables)


@dataclass(frozen=True, slots=True)
class QueryType:
    """The type a query names: its name, the words of the query that named it, and the types
    that serve it (its accessories and consumables)."""

    name: str
    phrase: str
    accessories: frozenset[str] = field(default_factory=frozenset)

    def relation(self, product_type: str | None) -> str | None:
        """How a hit of `product_type` stands to the query: `same` (the type named), `accessory`
        (an accessory or consumable of it), `other`; None for a hit without a type."""
        if not product_type:
            return None
        if product_type == self.name:
            return "same"
        return "accessory" if product_type in self.accessories else "other"


def singular(word: str) -> str:
    """A plain English singular, good enough to compare a query's words with type names
    (both sides go through it): boots -> boot, batteries -> battery, glasses -> glass."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _words(text: str) -> list[tuple[str, int, int]]:
    """Each Latin word of `text` (casefolded) singular, with its span."""
    return [(singular(m.group()), m.start(), m.end()) for m in _WORD.finditer(text.casefold())]


class TypeMatcher:
    """Recognises the product type a query names, from the vocabulary's names and synonyms."""

    def __init__(self, types: Iterable[ProductType]) -> None:
        self.types: dict[str, ProductType] = {}
        for t in types:
            if t.name in self.types:
                raise ValueError(f"product type {t.name!r} is listed twice")
            self.types[t.name] = t
        for t in self.types.values():
            unknown = [a for a in t.accessory_of if a not in self.types]
            if unknown:
                raise ValueError(f"product type {t.name!r}: accessory_of names unknown {unknown}")
        served: dict[str, set[str]] = {}
        for t in self.types.values():
            for main in t.accessory_of:
                served.setdefault(main, set()).add(t.name)
        self._accessories = {name: frozenset(served.get(name, ())) for name in self.types}
        # Latin names by their singular words; Chinese ones as they are written
        self._phrases: dict[tuple[str, ...], str] = {}
        self._han: dict[str, str] = {}
        for t in self.types.values():
            for phrase in (t.name, *t.synonyms):
                if _HAN.search(phrase):
                    self._han.setdefault(phrase.casefold(), t.name)
                else:
                    words = tuple(w for w, _, _ in _words(phrase))
                    if words:
                        self._phrases.setdefault(words, t.name)
        self._longest = max((len(p) for p in self._phrases), default=0)

    def __len__(self) -> int:
        return len(self.types)

    def recognise(self, text: str) -> QueryType | None:
        """The type `text` names, or None: the longest name in it, the later of two as long."""
        best: tuple[int, int, str, str] | None = None  # (length, end, type, phrase)
        words = _words(text)
        for i in range(len(words)):
            for n in range(min(self._longest, len(words) - i), 0, -1):
                name = self._phrases.get(tuple(w for w, _, _ in words[i : i + n]))
                if name is not None:
                    start, end = words[i][1], words[i + n - 1][2]
                    best = _better(best, (end - start, end, name, text[start:end]))
                    break  # the longest from this word on
        if self._han:
            folded = text.casefold()
            for phrase, name in self._han.items():
                at = folded.rfind(phrase)
                if at >= 0:
                    best = _better(best, (len(phrase), at + len(phrase), name, phrase))
        if best is None:
            return None
        return QueryType(best[2], best[3], self._accessories[best[2]])

    def role(self, name: str | None) -> Role | None:
        found = self.types.get(name) if name else None
        return found.role if found else None


def _better(
    best: tuple[int, int, str, str] | None, found: tuple[int, int, str, str]
) -> tuple[int, int, str, str]:
    return found if best is None or found[:2] > best[:2] else best


def parse(data: Any) -> list[ProductType]:
    """The vocabulary file's content: `{"types": [{name, synonyms, role, accessory_of}]}`."""
    if not isinstance(data, Mapping) or not isinstance(data.get("types"), list):
        raise ValueError('a product types file holds {"types": [...]}')
    out = []
    for i, item in enumerate(data["types"]):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise ValueError(f"types[{i}]: a type needs a name")
        unknown = set(item) - {"name", "synonyms", "role", "accessory_of"}
        if unknown:
            raise ValueError(f"types[{i}] ({item['name']}): unknown keys {sorted(unknown)}")
        role = item.get("role", "product")
        if role not in ROLES:
            raise ValueError(f"types[{i}] ({item['name']}): role is one of {', '.join(ROLES)}")
        accessory_of = tuple(item.get("accessory_of", ()))
        if role == "product" and accessory_of:
            raise ValueError(f"types[{i}] ({item['name']}): a product serves nothing")
        out.append(ProductType(item["name"], tuple(item.get("synonyms", ())), role, accessory_of))
    return out


def load(path: Path) -> TypeMatcher:
    """The matcher of a vocabulary file; ValueError naming the file when it does not read."""
    try:
        return TypeMatcher(parse(json.loads(path.read_text(encoding="utf-8"))))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
