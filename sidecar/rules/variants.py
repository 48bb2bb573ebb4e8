"""A/B variants: chosen by name, or assigned by a stable hash of a request key.

The bucket of a key is the first 8 bytes of sha256(key) read as a fraction in [0, 1). Variants
take consecutive slices of [0, 1) in file order, `share` wide each; the rest goes to `default`.
The hash does not depend on the rules' content, so editing a file keeps every user in their
variant unless the shares themselves change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sidecar.rules.schema import Variant

DEFAULT = "default"


def bucket(key: str) -> float:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(variants: Sequence[Variant], key: str) -> str:
    """The variant name for `key`: stable for a key, spread over variants by their shares."""
    point = bucket(key)
    edge = 0.0
    for variant in variants:
        edge += variant.share
        if point < edge:
            return variant.name
    return DEFAULT
