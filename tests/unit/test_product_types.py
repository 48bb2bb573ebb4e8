"""The product type matcher: which type a query names, from the vocabulary's names alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sidecar.product_types import ProductType, TypeMatcher, load, singular

TYPES = TypeMatcher(
    [
        ProductType("litter box", ("cat litter box", "猫砂盆")),
        ProductType("cat litter", ("litter", "猫砂"), "consumable", ("litter box",)),
        ProductType("laptop", ("笔记本电脑",)),
        ProductType("laptop backpack", ("电脑包",)),
        ProductType("laptop sleeve", (), "accessory", ("laptop",)),
        ProductType("tent", ("帐篷",)),
        ProductType("tent footprint", ("footprint", "地布"), "accessory", ("tent",)),
    ]
)


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("4 person tent", "tent"),
        ("Tents for 4", "tent"),  # plural and case
        ("tent footprint 4p", "tent footprint"),  # the longer name wins
        ("cat litter box", "litter box"),  # as long: the one that ends later (the head)
        ("litter for a cat", "cat litter"),
        ("laptop backpack 15 inch", "laptop backpack"),
        ("laptop 16gb ram", "laptop"),
        ("四人帐篷", "tent"),
        ("帐篷地布", "tent footprint"),
        ("猫砂盆", "litter box"),
        ("双肩电脑包", "laptop backpack"),
        ("a gift for mom", None),
        ("", None),
    ],
)
def test_recognises_the_type_a_query_names(query: str, named: str | None) -> None:
    found = TYPES.recognise(query)
    assert (found.name if found else None) == named


def test_the_named_types_accessories_and_each_hits_relation() -> None:
    tent = TYPES.recognise("tent 4 person")
    assert tent is not None and tent.accessories == {"tent footprint"}
    assert tent.relation("tent") == "same"
    assert tent.relation("tent footprint") == "accessory"
    assert tent.relation("laptop") == "other" and tent.relation(None) is None
    assert TYPES.role("cat litter") == "consumable" and TYPES.role("nope") is None


def test_singular() -> None:
    assert [singular(w) for w in ("boots", "batteries", "glasses", "boxes", "shoes", "gas")] == [
        "boot",
        "battery",
        "glass",
        "box",
        "shoe",
        "gas",
    ]


@pytest.mark.parametrize(
    ("types", "reason"),
    [
        ({"types": [{"name": "a"}, {"name": "a"}]}, "twice"),
        ({"types": [{"name": "a", "role": "accessory", "accessory_of": ["b"]}]}, "unknown"),
        ({"types": [{"name": "a", "role": "gadget"}]}, "role"),
        ({"types": [{"name": "a", "accessory_of": ["a"]}]}, "serves nothing"),
        ({"types": [{"name": "a", "colour": "red"}]}, "unknown keys"),
        ({"kinds": []}, "holds"),
    ],
)
def test_a_bad_vocabulary_is_refused_naming_the_file(
    tmp_path: Path, types: dict, reason: str
) -> None:
    path = tmp_path / "types.json"
    path.write_text(json.dumps(types), encoding="utf-8")
    with pytest.raises(ValueError, match=reason) as err:
        load(path)
    assert str(path) in str(err.value)
