import base64

import pytest

from sidecar.config import QuerySettings
from sidecar.errors import InvalidRequest
from sidecar.query import Normalizer

N = Normalizer(QuerySettings().casing)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("iPhone15pro max", "iPhone 15 Pro Max"),
        ("ｉｐｈｏｎｅ１５　ｐｒｏ", "iPhone 15 Pro"),  # full-width letters, digits and space
        ("  led    tv \t 55inch ", "LED TV 55 inch"),
        ("4k tv", "4K TV"),  # a casing term that mixes letters and digits stays whole
        ("usb-c cable 2m", "USB-C cable 2 m"),
        ("waterproof hiking boots", "waterproof hiking boots"),
        ("ＵＳＢ３.０ hub", "USB 3.0 hub"),
    ],
)
def test_normalizes_text(raw: str, expected: str) -> None:
    assert N.text(raw) == expected


def test_same_intent_same_cache_key() -> None:
    assert N.query("iphone15 PRO").cache_key == N.query(" iPhone 15  pro ").cache_key


def test_image_changes_the_key_and_base64_is_decoded() -> None:
    png = base64.b64encode(b"\x89PNG fake bytes").decode()
    plain = N.query("red dress")
    with_image = N.query("red dress", image_base64=png)
    data_url = N.query("red dress", image_base64="data:image/png;base64," + png)
    assert with_image.image_bytes == b"\x89PNG fake bytes"
    assert plain.cache_key != with_image.cache_key
    assert with_image.cache_key == data_url.cache_key


def test_image_only_query_is_allowed() -> None:
    query = N.query(None, image_url="https://img.example/shoe.jpg")
    assert query.text == "" and query.has_image


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"text": "   "}, "query"),
        ({"text": "x", "image_base64": "%%%not-base64"}, "query.image_base64"),
        ({"text": "x", "image_url": "  "}, "query.image_url"),
        ({"text": "x", "image_url": "http://a/b.png", "image_base64": "aGk="}, "query"),
    ],
)
def test_bad_queries_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        N.query(**kwargs)
    assert err.value.field == field
