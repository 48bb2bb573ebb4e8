"""What counts as CJK text for the engines' CJK sub-fields (pure).

Chinese and Japanese are written without spaces between words, and Korean's words run long: to
an analyzer built for spaces, "复古风牛仔外套" is one token that no other query finds. The
engines therefore index the CJK runs of each searched field a second time, cut into short
n-grams (the embedded engine's `title__cjk`, the templates' `title.cjk`), and a query whose text
has CJK runs also searches there.
"""

from __future__ import annotations

import re
import unicodedata

# Han (with extensions A-G and compatibility ideographs), kana (half-width too), Hangul syllables
CJK_RUN = re.compile(
    "[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
    "\uac00-\ud7af\U00020000-\U0003134f]+"
)


def cjk_runs(text: str) -> list[str]:
    """The runs of CJK characters in `text`, in their full-width forms (NFKC)."""
    if not CJK_RUN.search(text):
        return []
    return CJK_RUN.findall(unicodedata.normalize("NFKC", text))


def spaced(text: str) -> str:
    """`text` with a space around each CJK run ("苹果iPhone15" -> "苹果 iPhone15"), as the query
    normalizer spaces queries, so an analyzer that splits on spaces sees the Latin word."""
    return CJK_RUN.sub(r" \g<0> ", text) if CJK_RUN.search(text) else text
