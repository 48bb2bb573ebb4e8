"""Hit -> Document through the field map, including broken records."""

import pytest

from sidecar.backends.base import Hit
from sidecar.config import FieldMap
from sidecar.documents import from_hit

FM = FieldMap(
    id="sku",
    title="name",
    selling_points="bullets",
    image_urls="images",
    business=["sales", "brand"],
)


def test_maps_configured_fields() -> None:
    doc = from_hit(
        Hit(
            "es-1",
            3.0,
            {
                "sku": "A-1",
                "name": " Boots ",
                "bullets": ["dry", "warm"],
                "images": ["m.jpg", "s.jpg"],
                "sales": 10,
                "other": 1,
            },
        ),
        FM,
    )
    assert (doc.id, doc.title, doc.selling_points) == ("A-1", "Boots", ("dry", "warm"))
    assert doc.image_url == "m.jpg" and doc.fields == {"sales": 10}
    assert doc.text() == "Boots | dry | warm"


@pytest.mark.parametrize(
    "source",
    [
        {},
        {"name": None, "bullets": None, "images": None},
        {"bullets": "one string"},
        {"name": ["two", "parts"], "bullets": [None, "", 5], "images": ""},
    ],
)
def test_missing_or_odd_fields_never_crash(source: dict) -> None:
    doc = from_hit(Hit("es-9", 1.0, source), FM)
    assert doc.id == "es-9"  # falls back to the engine's _id
    assert isinstance(doc.text(), str)
    assert all(isinstance(p, str) and p for p in doc.selling_points)


def test_text_is_cut_to_max_chars() -> None:
    doc = from_hit(Hit("1", 1.0, {"name": "x" * 600}), FM)
    assert len(doc.text(512)) == 512
