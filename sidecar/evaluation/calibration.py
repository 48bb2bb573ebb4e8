"""Fitting a calibration (sidecar.scoring.calibration) on judged pairs, measuring it, and
drawing its reliability diagram.

Isotonic regression or Platt scaling from scikit-learn, on (raw score, relevant?) pairs. The fit
quality written with it has the in-sample numbers and, more telling, a cross-validated ECE: the
map fitted on all but one fold of the queries and measured on that fold, so the number says
what to expect on queries it has never seen.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sidecar.evaluation.metrics import brier, expected_calibration_error, reliability
from sidecar.scoring.calibration import Calibration, Method

BINS = 10
MIN_PAIRS = 10  # fewer judged pairs than this cannot say much about any curve


class CalibrationFitError(ValueError):
    """The judged pairs cannot make a calibration (too few, one class only, no signal)."""


@dataclass(frozen=True)
class Pairs:
    """Judged pairs: raw score, relevant or not, and which query each came from."""

    raw: Sequence[float]
    relevant: Sequence[bool]
    groups: Sequence[str]  # query ids: cross-validation folds never split a query


def fit_map(raw: Sequence[float], relevant: Sequence[bool], method: Method) -> dict[str, Any]:
    """The map's parameters (Calibration.params) fitted on these pairs."""
    x = np.asarray(raw, dtype=float)
    y = np.asarray(relevant, dtype=int)
    if x.size < MIN_PAIRS:
        raise CalibrationFitError(f"{x.size} judged pairs; a calibration needs {MIN_PAIRS}")
    if y.min() == y.max():
        kind = "relevant" if y[0] else "irrelevant"
        raise CalibrationFitError(
            f"every judged pair is {kind}: give a --relevant-min that splits the labels"
        )
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=np.inf).fit(x.reshape(-1, 1), y)  # no penalty
        a, b = float(model.coef_[0][0]), float(model.intercept_[0])
        if a <= 0:
            raise CalibrationFitError(
                f"the scores do not rise with relevance on these pairs (Platt slope {a:.4g}); "
                "check the label column and --relevant-min"
            )
        return {"a": a, "b": b}
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    iso.fit(x, y)
    xs = [float(v) for v in iso.X_thresholds_]
    ys = [float(v) for v in iso.y_thresholds_]
    if ys[-1] <= ys[0]:
        raise CalibrationFitError(
            "the scores do not rise with relevance on these pairs (the isotonic fit is flat); "
            "check the label column and --relevant-min"
        )
    return {"x": xs, "y": ys}


def fit(
    pairs: Pairs, method: Method, identity: str, model: str, meta: dict[str, Any] | None = None
) -> Calibration:
    """A calibration fitted on every pair, its quality in `meta["quality"]`."""
    params = fit_map(pairs.raw, pairs.relevant, method)
    calibration = Calibration(method, identity, model, params)
    quality = measure(pairs.raw, calibration.apply(pairs.raw), pairs.relevant)
    quality["cv"] = cross_validated(pairs, method)
    return Calibration(method, identity, model, params, meta={**(meta or {}), "quality": quality})


def measure(
    raw: Sequence[float], calibrated: Sequence[float | None], relevant: Sequence[bool]
) -> dict[str, Any]:
    """ECE and Brier score of the raw scores (read as probabilities) and the calibrated ones."""
    cal = [float(c) for c in calibrated if c is not None]
    return {
        "pairs": len(raw),
        "relevant": int(sum(relevant)),
        "bins": BINS,
        "ece_raw": expected_calibration_error(raw, relevant, BINS),
        "ece_calibrated": expected_calibration_error(cal, relevant, BINS),
        "brier_raw": brier(raw, relevant),
        "brier_calibrated": brier(cal, relevant),
    }


def cross_validated(pairs: Pairs, method: Method, folds: int = 5, seed: int = 0) -> dict[str, Any]:
    """ECE of out-of-fold predictions: each fold's queries calibrated by a map fitted on the
    other folds' queries. Fewer queries than folds: as many folds as queries (at least 2)."""
    queries = sorted(set(pairs.groups))
    k = min(folds, len(queries))
    if k < 2:
        return {"folds": 0, "note": "one query: no cross-validation"}
    random.Random(seed).shuffle(queries)
    fold_of = {q: i % k for i, q in enumerate(queries)}
    raw = np.asarray(pairs.raw, dtype=float)
    rel = np.asarray(pairs.relevant, dtype=bool)
    which = np.asarray([fold_of[g] for g in pairs.groups])
    predicted = np.full(raw.size, np.nan)
    for f in range(k):
        train, test = which != f, which == f
        try:
            params = fit_map(raw[train].tolist(), rel[train].tolist(), method)
        except CalibrationFitError as exc:
            return {"folds": k, "note": f"fold {f + 1}: {exc}"}
        predicted[test] = Calibration(method, "", "", params).apply(raw[test].tolist())
    return {
        "folds": k,
        "ece_calibrated": expected_calibration_error(predicted.tolist(), rel.tolist(), BINS),
        "brier_calibrated": brier(predicted.tolist(), rel.tolist()),
    }


def plot_reliability(
    path: Path,
    title: str,
    raw: Sequence[float],
    calibrated: Sequence[float | None],
    relevant: Sequence[bool],
) -> Path:
    """The reliability diagram before (raw) and after (calibrated), with the scores' spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cal = [float(c) for c in calibrated if c is not None]
    fig, (curve, spread) = plt.subplots(
        2, 1, figsize=(6, 7), gridspec_kw={"height_ratios": [3, 1]}, sharex=True
    )
    curve.plot([0, 1], [0, 1], color="black", linewidth=1, linestyle=":", label="perfect")
    for scores, name, color in ((raw, "raw", "#9aa5b1"), (cal, "calibrated", "#2f6fde")):
        points = reliability(scores, relevant, BINS)
        ece = expected_calibration_error(scores, relevant, BINS)
        curve.plot(
            [p["predicted"] for p in points],
            [p["observed"] for p in points],
            marker="o",
            color=color,
            label=f"{name} (ECE {ece:.3f})",
        )
        spread.hist(scores, bins=40, range=(0, 1), alpha=0.6, color=color, label=name)
    curve.set_xlim(0, 1)
    curve.set_ylim(0, 1)
    curve.set_ylabel("observed share of relevant pairs")
    curve.set_title(title)
    curve.legend(loc="upper left")
    spread.set_xlabel("score (predicted probability of relevant)")
    spread.set_ylabel("pairs")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
