"""backends.codec: orjson's speed, the standard library's values and errors, both ways."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.backends import codec


def starlette_json(value: Any) -> bytes:
    """What Starlette's JSONResponse writes."""
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def outcome(call: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", call(value)
    except Exception as exc:
        return "error", type(exc)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


def same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_dumps_writes_the_values_starlette_writes_and_refuses_what_it_refuses(value: Any) -> None:
    ours, theirs = outcome(codec.dumps, value), outcome(starlette_json, value)
    assert ours[0] == theirs[0]
    if ours[0] == "ok":
        assert same(json.loads(ours[1]), json.loads(theirs[1]))
    else:
        assert ours[1] is theirs[1]  # ValueError for NaN, UnicodeEncodeError for a surrogate


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_loads_reads_what_json_reads(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)  # NaN, Infinity and big integers included
    for data in (text, text.encode("utf-8", "surrogatepass")):
        ours, theirs = outcome(codec.loads, data), outcome(json.loads, data)
        assert ours[0] == theirs[0]
        assert same(ours[1], theirs[1]) if ours[0] == "ok" else ours[1] is theirs[1]


@pytest.mark.parametrize(
    "data",
    [
        b'{"id": 123456789012345678901234567890}',  # beyond 64 bits: exact, not a float
        b'{"a": -9223372036854775809}',
        b"[18446744073709551615, 9223372036854775807]",
        b'{"a": NaN, "b": -Infinity}',
        b"[1e400]",
        b'"\\ud800"',
        b'{"a": 1, "a": 2}',
        b"[0.1, 1e-7, 5e-324, 1.7976931348623157e308, -0.0]",
        '{"名": "防水登山靴"}'.encode(),
        b"\xef\xbb\xbf[1]",  # a byte-order mark
    ],
)
def test_loads_agrees_with_json_where_orjson_alone_would_not(data: bytes) -> None:
    ours, theirs = outcome(codec.loads, data), outcome(json.loads, data)
    assert ours[0] == theirs[0]
    assert same(ours[1], theirs[1]) if ours[0] == "ok" else ours[1] is theirs[1]


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", r"Expecting value: line 1 column 1 \(char 0\)"), (b'{"a":', "Expecting value")],
)
def test_loads_errors_are_jsons_own(data: bytes, message: str) -> None:
    with pytest.raises(json.JSONDecodeError, match=message):
        codec.loads(data)


def test_dumps_refuses_nan_even_where_orjson_would_write_null() -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        codec.dumps({"hits": [{"_score": None, "model_score": float("nan")}]})
    assert codec.dumps({"a": None, "b": 0.5}) == b'{"a":null,"b":0.5}'


def test_dumps_keeps_non_ascii_and_big_integers() -> None:
    assert (
        codec.dumps({"t": "防水 é", "n": 10**25})
        == '{"t":"防水 é","n":10000000000000000000000000}'.encode()
    )
