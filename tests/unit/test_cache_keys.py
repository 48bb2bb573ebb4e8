import hashlib

from sidecar.backends.base import Hit
from sidecar.cache.keys import pair_key, pair_keys
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


def test_the_key_is_the_one_earlier_releases_wrote() -> None:
    """A deployed Redis holds these keys: a new way of making them must not change them."""
    joined = "\x1e".join(("id-1", BASE["instruction"], BASE["query_key"], "p1", "abc"))
    digest = hashlib.sha256(joined.encode()).hexdigest()[:40]
    assert pair_key(**BASE, identity="id-1") == f"rr:all-MiniLM-L6-v2:{digest}"


def test_keys_for_a_window_are_each_products_own_key() -> None:
    products = [("p1", "abc"), ("p2", "abc"), ("ü/1", "d\x1ee"), ("", "")]
    args = {k: v for k, v in BASE.items() if k not in ("doc_id", "content_hash")}
    keys = pair_keys(**args, products=products, identity="x")
    assert keys == [pair_key(**args, doc_id=d, content_hash=c, identity="x") for d, c in products]
    assert len(set(keys)) == len(keys)


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
