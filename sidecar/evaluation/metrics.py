"""Ranking metrics, bootstrap confidence intervals and a paired significance test. Pure numpy."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def gain(label: float) -> float:
    """The data sets' graded gain: 2^(label - 1) - 1 (label 1 = irrelevant = no gain)."""
    return float(2 ** (label - 1) - 1)


def ndcg_at(ranking: Sequence[str], labels: Mapping[str, float], k: int = 10) -> float:
    dcg = sum(gain(labels.get(doc, 1.0)) / math.log2(i + 2) for i, doc in enumerate(ranking[:k]))
    ideal = sorted((gain(v) for v in labels.values()), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def mrr_best(ranking: Sequence[str], labels: Mapping[str, float]) -> float:
    """Reciprocal rank of the first product holding the query's best label."""
    best = max(labels.values())
    for i, doc in enumerate(ranking):
        if labels.get(doc) == best:
            return 1.0 / (i + 1)
    return 0.0


def recall_at(
    ranking: Sequence[str], labels: Mapping[str, float], threshold: float, k: int = 10
) -> float:
    relevant = {doc for doc, v in labels.items() if v > threshold}
    if not relevant:
        return float("nan")
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def bootstrap_ci(
    values: Sequence[float], rounds: int = 2000, level: float = 0.95, seed: int = 7
) -> tuple[float, float]:
    data = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if data.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(rounds, data.size))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def paired_permutation_p(
    a: Sequence[float], b: Sequence[float], rounds: int = 10_000, seed: int = 11
) -> float:
    """Two-sided p-value that mean(b - a) is 0, by randomly flipping the sign of each query's
    difference (a paired randomization test; makes no normality assumption)."""
    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    diff = diff[~np.isnan(diff)]
    if diff.size == 0 or not diff.any():
        return 1.0
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(rounds, diff.size))
    observed = abs(diff.mean())
    extreme = (np.abs((signs * diff).mean(axis=1)) >= observed - 1e-12).sum()
    return float((extreme + 1) / (rounds + 1))


def reliability(
    probabilities: Sequence[float], outcomes: Sequence[bool], bins: int = 10
) -> list[dict[str, float]]:
    """Equal-width bins over [0, 1]: per non-empty bin its count, mean predicted probability
    and observed rate of relevant pairs (the points of a reliability diagram)."""
    p = np.clip(np.asarray(probabilities, dtype=float), 0.0, 1.0)
    y = np.asarray(outcomes, dtype=float)
    which = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            out.append(
                {
                    "low": b / bins,
                    "high": (b + 1) / bins,
                    "count": int(mask.sum()),
                    "predicted": float(p[mask].mean()),
                    "observed": float(y[mask].mean()),
                }
            )
    return out


def expected_calibration_error(
    probabilities: Sequence[float], outcomes: Sequence[bool], bins: int = 10
) -> float:
    """ECE: the count-weighted mean gap between predicted probability and observed rate over
    equal-width bins; 0 is perfectly calibrated."""
    points = reliability(probabilities, outcomes, bins)
    total = sum(b["count"] for b in points)
    if total == 0:
        return float("nan")
    return sum(b["count"] * abs(b["predicted"] - b["observed"]) for b in points) / total


def brier(probabilities: Sequence[float], outcomes: Sequence[bool]) -> float:
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(outcomes, dtype=float)
    return float(np.mean((p - y) ** 2)) if p.size else float("nan")
