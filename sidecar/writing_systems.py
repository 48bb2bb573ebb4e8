"""Which writing system a query is in, and whether a scorer reads it.

A scorer declares the languages it reads (`scorer.languages`: the CPU default English, Lychee
English and Chinese). A query whose letters are mostly in a script none of those languages is
written in (Chinese characters for an English-only model) gets no confident, meaningless order:
/search keeps the engine's order and says why, the rerank APIs flag the answer. Mixed text such
as "苹果iphone15promax" counts by its letters: mostly Latin, so an English scorer reads it.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Collection

# Language (ISO 639-1) -> the scripts it is written in; "*" reads everything.
# Languages written in the Latin script (a short list; "*" or a code below covers the rest).
_LATIN = "en de fr es it pt nl sv da no fi pl cs sk sl hr ro hu tr id ms vi ca et lv lt"
LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **{code: frozenset({"Latin"}) for code in _LATIN.split()},
    "zh": frozenset({"Han"}),
    "ja": frozenset({"Han", "Hiragana", "Katakana"}),
    "ko": frozenset({"Hangul", "Han"}),
    **{code: frozenset({"Cyrillic"}) for code in ("ru", "uk", "bg", "sr", "be", "kk")},
    "el": frozenset({"Greek"}),
    "ar": frozenset({"Arabic"}),
    "fa": frozenset({"Arabic"}),
    "he": frozenset({"Hebrew"}),
    "th": frozenset({"Thai"}),
    "hi": frozenset({"Devanagari"}),
}
KNOWN_LANGUAGES = frozenset(LANGUAGE_SCRIPTS) | {"*"}

# Unicode character-name prefixes -> script (enough for the scripts above; others are "Other").
_PREFIXES = (
    ("CJK ", "Han"),
    ("HIRAGANA", "Hiragana"),
    ("KATAKANA", "Katakana"),
    ("HANGUL", "Hangul"),
    ("LATIN", "Latin"),
    ("CYRILLIC", "Cyrillic"),
    ("GREEK", "Greek"),
    ("ARABIC", "Arabic"),
    ("HEBREW", "Hebrew"),
    ("THAI", "Thai"),
    ("DEVANAGARI", "Devanagari"),
)


def script_of(char: str) -> str | None:
    """The script of a letter; None for what is not a letter (digits, spaces, punctuation)."""
    if not unicodedata.category(char).startswith("L"):
        return None
    name = unicodedata.name(char, "")
    for prefix, script in _PREFIXES:
        if name.startswith(prefix):
            return script
    return "Other"


def unreadable_script(text: str, languages: Collection[str]) -> str | None:
    """The script most of `text`'s letters are in, when no language in `languages` is written
    in it; None when the scorer reads the text (or it has no letters)."""
    if "*" in languages:
        return None
    counts = Counter(s for s in map(script_of, text) if s is not None)
    if not counts:
        return None
    readable = frozenset().union(*(LANGUAGE_SCRIPTS.get(code, frozenset()) for code in languages))
    unread = {script: n for script, n in counts.items() if script not in readable}
    if sum(unread.values()) * 2 <= sum(counts.values()):  # at most half: the scorer reads it
        return None
    return max(unread, key=lambda script: unread[script])
