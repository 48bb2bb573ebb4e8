from sidecar.backends.base import Hit
from sidecar.cache.keys import pair_key
from sidecar.config import FieldMap
from sidecar.documents import from_hit

BASE = dict(
    prefix="rr:",
    model_id="all-MiniLM-L6-v2",
    instruction="inst",
    query_key="boots\x1f",
    doc_id="p1",
    content_hash="abc",
)


def test_key_is_stable_and_names_the_model() -> None:
    assert pair_key(**BASE) == pair_key(**BASE)
    assert pair_key(**BASE).startswith("rr:all-MiniLM-L6-v2:")


def test_every_input_changes_the_key() -> None:
    base = pair_key(**BASE)
    for name, other in [
        ("model_id", "lychee-7b"),
        ("instruction", "other"),
        ("query_key", "shoes\x1f"),
        ("doc_id", "p2"),
        ("content_hash", "def"),
        ("prefix", "staging:"),
    ]:
        assert pair_key(**{**BASE, name: other}) != base, name


def test_business_fields_do_not_change_the_content_hash() -> None:
    fm = FieldMap()
    src = {"title": "Boots", "selling_points": ["dry"], "image_url": "a.png", "sales": 1}
    a = from_hit(Hit("p1", 1.0, src), fm)
    b = from_hit(Hit("p1", 1.0, {**src, "sales": 99999, "price": 1.0}), fm)
    c = from_hit(Hit("p1", 1.0, {**src, "title": "Boots v2"}), fm)
    assert a.content_hash == b.content_hash != c.content_hash
