"""Refit the calibration the default configuration ships for the default model (all-MiniLM-L6-v2,
its bundled weights): `sidecar/scoring/calibrations/minilm-default.json`.

    .venv/bin/python -m bench.fit_default_calibration \
        ../shared/data/crowdflower-dev.csv ../shared/data/homedepot-dev.csv

Protocol (so that nothing is reported on a query it was fitted on):
- each file is split in two halves by query (`--half` of `eval`: a seeded hash of the query
  text, seed 0); the map is fitted on half 1 of both files together, and half 2 of each is the
  held-out set the file, `eval --half 2` and the docs report on;
- relevant = a label above the middle of its file's range (CrowdFlower 1-4: 3 and 4; Home Depot
  1-3: above 2), as `rerank-sidecar calibrate` counts it;
- Platt and isotonic are compared by 5-fold cross-validation over half 1, grouped by query (no
  query is both fitted and measured), on log loss (a proper scoring rule) and ECE; the one with
  the lower cross-validated log loss is fitted on all of half 1 and written.

Every pair is scored raw through the real scoring path (scorer and cache), as `calibrate`
does. The file records the data (file names and sha256, split, the fitted queries' hashes: no
judged text), the method comparison, the cross-validated and held-out errors; the reliability
diagram on the held-out halves goes to `--plot`. A change of the default model's weights, text
limit or scoring rule changes its score identity, and the shipped file is then ignored (and
`/readyz` says scores are raw) until this script is run again.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sidecar.config import Settings
from sidecar.evaluation.calibration import (
    BINS,
    Pairs,
    fit,
    fit_map,
    measure,
    plot_reliability,
)
from sidecar.evaluation.data import Dataset, Relevance, load_csv, query_digest, split_queries
from sidecar.evaluation.judged import score_judged
from sidecar.evaluation.metrics import brier, expected_calibration_error
from sidecar.evaluation.session import eval_settings
from sidecar.scoring.base import identity_of
from sidecar.scoring.calibration import BUNDLED_DIR, Calibration, Method
from sidecar.wiring import loaded_services

OUT = BUNDLED_DIR / "minilm-default.json"
PLOT = Path(__file__).parent.parent / "docs" / "minilm-default-calibration.png"
SEED = 0  # the --half split's seed: `eval --half 2 --split-seed 0` reports on the other half
FOLDS = 5
EPS = 1e-6  # log loss: probabilities clipped away from 0 and 1 (isotonic reaches both)


@dataclass
class Scored:
    """One file's judged pairs of one half, raw scores and relevance."""

    name: str
    raw: list[float]
    relevant: list[bool]
    groups: list[str]  # "<file>:<query id>"


def log_loss(p: Sequence[float], y: Sequence[bool]) -> float:
    q = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    t = np.asarray(y, dtype=float)
    return float(-np.mean(t * np.log(q) + (1 - t) * np.log(1 - q)))


def errors(p: Sequence[float], y: Sequence[bool]) -> dict[str, float]:
    return {
        "ece": round(expected_calibration_error(p, y, BINS), 4),
        "log_loss": round(log_loss(p, y), 4),
        "brier": round(brier(p, y), 4),
    }


def out_of_fold(pairs: Pairs, method: Method) -> np.ndarray:
    """Each query's pairs predicted by a map fitted on the other folds' queries."""
    queries = sorted(set(pairs.groups))
    random.Random(SEED).shuffle(queries)
    fold_of = {q: i % FOLDS for i, q in enumerate(queries)}
    raw = np.asarray(pairs.raw, dtype=float)
    rel = np.asarray(pairs.relevant, dtype=bool)
    which = np.asarray([fold_of[g] for g in pairs.groups])
    predicted = np.full(raw.size, np.nan)
    for f in range(FOLDS):
        train, test = which != f, which == f
        params = fit_map(raw[train].tolist(), rel[train].tolist(), method)
        predicted[test] = Calibration(method, "", "", params).apply(raw[test].tolist())
    return predicted


def by_file(parts: Sequence[Scored], predicted: Sequence[float]) -> dict[str, dict[str, float]]:
    out, start = {}, 0
    for part in parts:
        end = start + len(part.raw)
        out[part.name] = errors(list(predicted[start:end]), part.relevant)
        start = end
    return out


def pooled(parts: Sequence[Scored]) -> Pairs:
    return Pairs(
        raw=[r for p in parts for r in p.raw],
        relevant=[y for p in parts for y in p.relevant],
        groups=[g for p in parts for g in p.groups],
    )


async def score(datasets: Sequence[Dataset]) -> tuple[dict[str, list[Scored]], str, str]:
    """Both halves of every file, raw scores through the default scorer (no calibration)."""
    settings = eval_settings(Settings(scorer={"calibration": None}))
    halves: dict[str, list[Scored]] = {"1": [], "2": []}
    async with loaded_services(settings) as services:
        identity, model = identity_of(services.scorer), services.scorer.model_id
        for dataset in datasets:
            relevance = Relevance.default_for(dataset)
            for half in ("1", "2"):
                part, _ = split_queries(dataset, int(half), SEED)
                print(f"scoring {part.name}: {len(part.queries)} queries", flush=True)
                queries = await score_judged(part, services)
                halves[half].append(
                    Scored(
                        dataset.name,
                        [q.raw[i] for q in queries for i in q.ids],
                        [relevance(q.labels[i]) for q in queries for i in q.ids],
                        [f"{dataset.name}:{q.query.id}" for q in queries for i in q.ids],
                    )
                )
    return halves, identity, model


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="+", type=Path, help="judged CSV files (column detection)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--plot", type=Path, default=PLOT)
    args = parser.parse_args(argv)
    datasets = [load_csv(path) for path in args.data]
    halves, identity, model = asyncio.run(score(datasets))
    fitted, held_out = halves["1"], halves["2"]
    train = pooled(fitted)
    methods: dict[str, Any] = {}
    for method in ("platt", "isotonic"):
        predicted = out_of_fold(train, method)  # type: ignore[arg-type]
        methods[method] = {
            **errors(predicted.tolist(), train.relevant),
            "by_file": by_file(fitted, predicted.tolist()),
        }
    chosen: Method = min(("platt", "isotonic"), key=lambda m: methods[m]["log_loss"])
    test = pooled(held_out)
    relevance = {d.name: Relevance.default_for(d).to_json() for d in datasets}
    meta: dict[str, Any] = {
        "created": datetime.date.today().isoformat(),
        "refit": "python -m bench.fit_default_calibration "
        + " ".join(f"../shared/data/{p.name}" for p in args.data),
        "max_doc_chars": 512,
        "data": {
            "name": "+".join(d.name for d in datasets),
            "files": [
                {
                    "name": p.name,
                    "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
                    "relevant": relevance[d.name],
                    "queries_fitted": len({g for g in part.groups}),
                    "pairs_fitted": len(part.raw),
                }
                for p, d, part in zip(args.data, datasets, fitted, strict=True)
            ],
            "split": {"by": "query", "seed": SEED, "half": 1, "of": 2},
            "queries": len(set(train.groups)),
            "pairs": len(train.raw),
            "query_digests": sorted(
                query_digest(q.text) for d in datasets for q in split_queries(d, 1, SEED)[0].queries
            ),
        },
        "method_choice": {
            "rule": f"lower log loss, {FOLDS}-fold cross-validation over the fitted half, "
            "grouped by query",
            **methods,
        },
    }
    calibration = fit(train, chosen, identity, model, meta)
    mapped = calibration.apply(test.raw)
    held = measure(test.raw, mapped, test.relevant)
    held["by_file"] = {
        part.name: measure(part.raw, calibration.apply(part.raw), part.relevant)
        for part in held_out
    }
    held["log_loss_raw"] = round(log_loss(test.raw, test.relevant), 4)
    held["log_loss_calibrated"] = round(log_loss([float(m or 0) for m in mapped], test.relevant), 4)
    body = calibration.to_json()
    body["quality"]["held_out"] = {"split": {"by": "query", "seed": SEED, "half": 2}, **held}
    body["quality"] = _rounded(body["quality"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    plot_reliability(
        args.plot,
        f"default MiniLM, {chosen}: held-out queries (half 2 of both files)",
        test.raw,
        mapped,
        test.relevant,
    )
    for method, row in methods.items():
        print(
            f"{method:9s} cross-validated (grouped by query): ECE {row['ece']:.4f}, "
            f"log loss {row['log_loss']:.4f}, Brier {row['brier']:.4f}"
        )
    print(
        f"chose {chosen}; held-out half 2 ({held['pairs']} pairs): ECE raw "
        f"{held['ece_raw']:.4f} -> {held['ece_calibrated']:.4f}; identity {identity}"
    )
    print(f"wrote {args.out}\nwrote {args.plot}")


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


if __name__ == "__main__":
    main()
