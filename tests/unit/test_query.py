import base64

import pytest

from sidecar.config import QuerySettings
from sidecar.errors import InvalidRequest
from sidecar.query import Normalizer, Query

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


def test_a_large_base64_image_is_decoded_later_with_the_same_key() -> None:
    """Decoding 16 MiB of base64 takes ~150 ms: above DECODE_LATER the pipeline does it in a
    worker thread (Query.decoded), and the query is the same as one decoded at once."""
    from sidecar.query import DECODE_LATER

    payload = bytes(range(256)) * (DECODE_LATER // 256 + 1)
    encoded = base64.b64encode(payload).decode()
    normalizer = Normalizer()
    later = normalizer.query("red dress", image_base64=encoded)
    assert later.pending and later.has_image and later.image_bytes is None
    with pytest.raises(RuntimeError):
        _ = later.cache_key  # no key can be made before the image is known
    ready = later.decoded()
    assert not ready.pending and ready.image_bytes == payload
    assert ready.cache_key == Query("red dress", image_bytes=payload).cache_key


def test_a_large_payload_that_is_not_base64_is_refused_when_decoded() -> None:
    from sidecar.query import DECODE_LATER

    later = Normalizer().query("", image_base64="%" * (DECODE_LATER + 1))
    with pytest.raises(InvalidRequest) as refused:
        later.decoded()
    assert refused.value.field == "query.image_base64"


@pytest.mark.parametrize(
    ("text", "languages", "unread"),
    [
        ("复古风牛仔外套", ["en"], "Han"),
        ("办公室绿植，好养不死", ["en"], "Han"),
        ("复古风牛仔外套", ["en", "zh"], None),
        ("苹果iphone15promax", ["en"], None),  # mostly Latin letters: read
        ("waterproof hiking boots", ["en"], None),
        ("ботинки", ["en"], "Cyrillic"),
        ("ботинки", ["*"], None),
        ("12345 !!", ["en"], None),  # no letters: nothing to judge
        ("防水登山靴 新款 boot", ["en"], "Han"),  # 7 Han letters, 4 Latin
        ("登山靴 boots", ["en"], None),  # 3 Han, 5 Latin
    ],
)
def test_a_query_mostly_in_a_script_the_scorer_does_not_read_is_named(
    text: str, languages: list[str], unread: str | None
) -> None:
    from sidecar.writing_systems import unreadable_script

    assert unreadable_script(Normalizer().text(text), languages) == unread


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("苹果iphone15promax", "苹果 iPhone 15 Pro Max"),  # casing works inside Chinese text
        ("iphone 15 pro max手机壳", "iPhone 15 Pro Max 手机壳"),
        ("ｉＰｈｏｎｅ１５ｐｒｏ　ｍａｘ　手机壳", "iPhone 15 Pro Max 手机壳"),  # full-width kept
        ("airpodspro", "AirPods Pro"),  # terms run together
        ("promise", "promise"),  # an ordinary word is never cut into terms
        ("maximum", "maximum"),
    ],
)
def test_chinese_and_run_together_brand_spellings(raw: str, clean: str) -> None:
    assert Normalizer(QuerySettings().casing).text(raw) == clean


def test_traditional_chinese_is_written_as_simplified_when_asked() -> None:
    assert Normalizer().text("蘋果手機殼") == "蘋果手機殼"  # off by default
    convert = Normalizer(traditional_to_simplified=True)
    assert convert.text("蘋果手機殼 復古風牛仔外套") == "苹果手机壳 复古风牛仔外套"
