"""Fusing the legs of a hybrid first stage: pure functions over ranked hit lists.

Reciprocal rank fusion (Cormack, Clarke and Buettcher, SIGIR 2009) scores a product by
`sum(weight / (k + rank))` over the legs that found it, so BM25's unbounded scores and the
vectors' cosines never have to share a scale; `linear` is the cheap alternative that does use
the scores, each leg's divided by its best. Ties are broken by the best rank the product has in
any leg, then by the legs' order (the lexical leg first), then by the rank within it, so the
order is the same on every run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from sidecar.backends.base import Hit, LegRank

Legs = Mapping[str, Sequence[Hit]]  # leg name -> its hits, best first (lexical first)


def _ranked(legs: Legs) -> dict[tuple[str, str], dict[str, LegRank]]:
    """(index, id) -> leg -> its rank and score there; a product twice in one leg counts once,
    at its better place."""
    seen: dict[tuple[str, str], dict[str, LegRank]] = {}
    for name, hits in legs.items():
        for rank, hit in enumerate(hits, start=1):
            seen.setdefault((hit.index, hit.id), {}).setdefault(name, LegRank(rank, hit.score))
    return seen


def _fused(legs: Legs, score_of: dict[tuple[str, str], float]) -> list[Hit]:
    order = list(legs)
    ranked = _ranked(legs)
    first: dict[tuple[str, str], Hit] = {}
    for hits in legs.values():
        for hit in hits:
            first.setdefault((hit.index, hit.id), hit)

    def key(item: tuple[str, str]) -> tuple[float, int, int, int]:
        places = ranked[item]
        best = min(p.rank for p in places.values())
        leg = next(i for i, name in enumerate(order) if name in places)
        return (-score_of[item], best, leg, places[order[leg]].rank)

    return [
        replace(first[item], score=score_of[item], legs=dict(ranked[item]))
        for item in sorted(ranked, key=key)
    ]


def rrf(legs: Legs, weights: Mapping[str, float] | None = None, k: int = 60) -> list[Hit]:
    """Reciprocal rank fusion: each hit's score is the sum of `weight / (k + rank)` over the
    legs that found it (weight 1 for a leg not in `weights`); each fused hit carries `legs`."""
    if k < 1:
        raise ValueError("k must be at least 1")
    weights = weights or {}
    scores = {
        item: sum(weights.get(name, 1.0) / (k + place.rank) for name, place in places.items())
        for item, places in _ranked(legs).items()
    }
    return _fused(legs, scores)


def linear(legs: Legs, weights: Mapping[str, float] | None = None) -> list[Hit]:
    """Weighted sum of each leg's score divided by that leg's best (a leg's scores in [0, 1]);
    a leg that did not find a product gives it 0."""
    weights = weights or {}
    best = {name: max((h.score for h in hits), default=0.0) for name, hits in legs.items()}
    scores = {
        item: sum(
            weights.get(name, 1.0) * (place.score / best[name] if best[name] > 0 else 0.0)
            for name, place in places.items()
        )
        for item, places in _ranked(legs).items()
    }
    return _fused(legs, scores)
