"""Query normalization: pure functions, no I/O.

Shoppers type "iPhone15pro max", "ｉｐｈｏｎｅ　１５" or "  led   tv ". The same intent must give
the same text, so that the engine sees clean terms and repeated queries share cache entries.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from sidecar.errors import InvalidRequest

# base64 images longer than this are decoded by the pipeline in a worker thread (Query.decoded)
DECODE_LATER = 256 * 1024
_LETTER_DIGIT = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")
# Between Chinese characters and Latin letters or digits ("苹果iphone15" -> "苹果 iphone15"):
# engines and casing see the Latin part as a word of its own.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAN_LATIN = re.compile(rf"(?<=[{_HAN}])(?=[A-Za-z0-9])|(?<=[A-Za-z0-9])(?=[{_HAN}])")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class Query:
    """A normalized query: text, an optional image, and the key that identifies it in caches."""

    text: str
    image_url: str | None = None
    image_bytes: bytes | None = None
    # A large base64 image not decoded yet: decoding 16 MiB takes ~150 ms, so the pipeline
    # calls `decoded()` in a worker thread instead of blocking the event loop with it.
    image_base64: str | None = None

    @property
    def has_image(self) -> bool:
        return (
            self.image_url is not None
            or self.image_bytes is not None
            or self.image_base64 is not None
        )

    @property
    def pending(self) -> bool:
        return self.image_base64 is not None

    def decoded(self) -> Query:
        """This query with its base64 image decoded and hashed (InvalidRequest if it is not
        base64): the slow part, for a worker thread."""
        if self.image_base64 is None:
            return self
        query = replace(self, image_bytes=_decode_base64(self.image_base64), image_base64=None)
        _ = query.image_hash  # hashed here too, off the event loop
        return query

    @cached_property  # once per request: hashing a 12 MiB upload per document blocked the loop
    def image_hash(self) -> str:
        if self.image_base64 is not None:  # a key without the image would mix up queries
            raise RuntimeError("Query.image_hash before Query.decoded()")
        if self.image_bytes is not None:
            return "b64:" + hashlib.sha256(self.image_bytes).hexdigest()[:32]
        if self.image_url is not None:
            return "url:" + hashlib.sha256(self.image_url.encode()).hexdigest()[:32]
        return ""

    @cached_property
    def cache_key(self) -> str:
        return f"{self.text}\x1f{self.image_hash}"


class Normalizer:
    """Normalizes query text: (traditional -> simplified Chinese, optional), NFKC (full-width ->
    half-width), whitespace, Chinese/Latin and letter/digit spacing, configured casing (also for
    terms run together: "promax" -> "Pro Max")."""

    def __init__(
        self, casing: Iterable[str] = (), *, traditional_to_simplified: bool = False
    ) -> None:
        self._casing = {term.lower(): term for term in casing}
        self._t2s: Any = None
        if traditional_to_simplified:
            import opencc  # the OpenCC project's own binding; only loaded when asked for

            self._t2s = opencc.OpenCC("t2s")

    def text(self, raw: str) -> str:
        text = self._t2s.convert(raw) if self._t2s is not None else raw
        text = _HAN_LATIN.sub(" ", unicodedata.normalize("NFKC", text))
        words = [self._word(w) for w in _WORD.findall(text)]
        return " ".join(w for w in words if w)

    def _word(self, word: str) -> str:
        known = self._casing.get(word.lower())
        if known is not None:  # "4K", "PS5", "USB-C" stay whole
            return known
        parts = _LETTER_DIGIT.sub(" ", word).split()
        return " ".join(self._part(p) for p in parts)

    def _part(self, part: str) -> str:
        known = self._casing.get(part.lower())
        if known is not None:
            return known
        pieces = self._known_pieces(part.lower())
        return " ".join(pieces) if pieces else part

    def _known_pieces(self, word: str) -> list[str] | None:
        """`word` as two or more casing terms run together ("promax" -> Pro, Max), or None:
        only whole segmentations count, so an ordinary word is never cut."""
        if len(word) < 4 or not word.isalpha():
            return None
        # best[i]: the fewest terms that spell word[:i] (None: cannot be spelled)
        best: list[list[str] | None] = [[]] + [None] * len(word)
        for end in range(1, len(word) + 1):
            for start in range(max(0, end - 16), end - 1):
                head, piece = best[start], self._casing.get(word[start:end])
                if head is not None and piece is not None:
                    candidate = [*head, piece]
                    if best[end] is None or len(candidate) < len(best[end] or ()):
                        best[end] = candidate
        found = best[len(word)]
        return found if found is not None and len(found) > 1 else None

    def query(
        self,
        text: str | None,
        image_url: str | None = None,
        image_base64: str | None = None,
    ) -> Query:
        """Build a Query, or raise InvalidRequest naming the field."""
        clean = self.text(text or "")
        pending = image_base64 if image_base64 and len(image_base64) > DECODE_LATER else None
        image_bytes = _decode_base64(image_base64) if image_base64 and not pending else None
        if image_url is not None and not image_url.strip():
            raise InvalidRequest("image_url is empty", field="query.image_url")
        if image_url and (image_bytes is not None or pending):
            raise InvalidRequest(
                "give the query image as image_url or image_base64, not both", field="query"
            )
        if not clean and image_url is None and image_bytes is None and not pending:
            raise InvalidRequest("query is empty: give text, an image, or both", field="query")
        return Query(
            text=clean,
            image_url=image_url.strip() if image_url else None,
            image_bytes=image_bytes,
            image_base64=pending,
        )


def _decode_base64(data: str) -> bytes:
    payload = data.split(",", 1)[1] if data.startswith("data:") else data
    try:
        decoded = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(
            "image_base64 is not valid base64", field="query.image_base64"
        ) from exc
    if not decoded:
        raise InvalidRequest("image_base64 is empty", field="query.image_base64")
    return decoded
