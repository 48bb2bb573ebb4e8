"""Pair-score cache keys.

A key names everything the score depends on: the model and its score identity (weights, prompt,
limits, dtype: sidecar.scoring.identity), the instruction, the normalized query (text and image),
the product id and the hash of what the model reads of it. Rules are applied
after the cache, so editing rules never invalidates it; a new model or a changed product does.
The model id stays readable in the key so an operator can flush one model's entries by prefix.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from functools import lru_cache

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@lru_cache(maxsize=64)
def model_slug(model_id: str) -> str:
    return _UNSAFE.sub("_", model_id)[:64]


def pair_key(
    prefix: str,
    model_id: str,
    instruction: str,
    query_key: str,
    doc_id: str,
    content_hash: str,
    identity: str = "",
) -> str:
    (key,) = pair_keys(prefix, model_id, instruction, query_key, [(doc_id, content_hash)], identity)
    return key


def pair_keys(
    prefix: str,
    model_id: str,
    instruction: str,
    query_key: str,
    products: Iterable[tuple[str, str]],
    identity: str = "",
) -> list[str]:
    """`pair_key` for each (doc_id, content_hash) of one query: the same keys, with the part
    they share (identity, instruction, query) hashed once instead of once per product."""
    head = f"{prefix}{model_slug(model_id)}:"
    shared = hashlib.sha256("\x1e".join((identity, instruction, query_key, "")).encode())
    keys = []
    for doc_id, content_hash in products:
        digest = shared.copy()
        digest.update(f"{doc_id}\x1e{content_hash}".encode())
        keys.append(head + digest.hexdigest()[:40])
    return keys
