"""JSON at orjson's speed with the standard library's answers, for the hot paths: the engines'
answers read by the backends, the drop-in's bodies and answers.

`loads(data)` is `json.loads(data)`: orjson reads it, except where orjson would answer otherwise,
and then `json` does (so the value, or the error with its message and position, is the one
`json` gives):
- a run of 19 or more digits: an integer beyond 64 bits, which orjson reads as a float and
  `json` exactly (a long fraction or a digit run inside a string is merely read by `json`);
- whatever orjson refuses: `NaN` and `Infinity`, a number beyond the float range, lone
  surrogates, text that is not UTF-8 or not JSON at all.

`dumps(value)` is what Starlette's JSONResponse writes (`json.dumps(value, ensure_ascii=False,
allow_nan=False, separators=(",", ":")).encode("utf-8")`), as the same JSON values: orjson
writes it, except where orjson would write something else, and then `json` does, raising what
it raises:
- a float that is NaN or infinite (orjson writes `null`; `json` refuses it: ValueError),
- an integer beyond 64 bits, a key that is not a string, a subclass of str, int, dict or list,
  a dataclass or a date (orjson has its own ways with them; `json` has its own), a type
  neither knows (TypeError, from `json`), nesting deeper than orjson's 254 levels.
  Only a UUID or a plain Enum member (not a str or int one) is written by orjson where `json`
  refuses it; no answer holds one.
Floats are written in their shortest round-trip form by both (`1e-7` here, `1e-07` from
`json`: the same number).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

# A digit run this long may be an integer orjson cannot hold (int64 has 19 digits at most).
# Found by mapping every digit to "0" and looking for 19 of them: 12x faster than a regex.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19
_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def loads(data: bytes | str) -> Any:
    """`json.loads(data)`, read by orjson where it gives the same value."""
    try:
        raw = data.encode() if isinstance(data, str) else data
    except UnicodeEncodeError:  # a lone surrogate: json reads it
        return json.loads(data)
    if _LONG_NUMBER not in raw.translate(_DIGITS_AS_ZERO):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # json decides: it reads what orjson refuses (NaN, ...) or says why not
    return json.loads(data)


def dumps(value: Any) -> bytes:
    """UTF-8 JSON of `value`, compact, non-ASCII kept, NaN and infinities refused."""
    try:
        out = orjson.dumps(value, default=_not_plain, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError included: json decides
        return _json_dumps(value)
    if b"null" in out and not _finite(value):  # orjson wrote a NaN or infinity as null
        return _json_dumps(value)
    return out


def _json_dumps(value: Any) -> bytes:
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def _not_plain(value: Any) -> Any:
    raise TypeError(f"not plain JSON: {type(value).__name__}")


def _finite(value: Any) -> bool:
    """No float in `value` is NaN or infinite (orjson has checked the rest is plain JSON)."""
    stack = [value]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is float:
            if node - node != 0.0:  # NaN - NaN and inf - inf are NaN
                return False
        elif kind is dict:
            stack.extend(node.values())
        elif kind is list or kind is tuple:
            stack.extend(node)
    return True
