"""Pair-score caches: the ScoreCache contract, an in-process LRU and Redis."""

from sidecar.cache.base import CacheUnavailable, ScoreCache
from sidecar.cache.keys import pair_key

__all__ = ["CacheUnavailable", "ScoreCache", "pair_key"]
