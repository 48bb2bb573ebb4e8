"""Score calibration: the map (sidecar/scoring/calibration.py), its fit and quality
(sidecar/evaluation/calibration.py), ECE (sidecar/evaluation/metrics.py), the query split."""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import pytest

from sidecar.errors import ConfigError
from sidecar.evaluation.calibration import CalibrationFitError, Pairs, fit, fit_map
from sidecar.evaluation.data import Dataset, JudgedQuery, Relevance, split_queries
from sidecar.evaluation.metrics import expected_calibration_error, reliability
from sidecar.scoring.calibration import (
    Calibration,
    check_identity,
    load_calibration,
    parse_calibration,
)


def synthetic(n: int, seed: int) -> Pairs:
    """Raw scores squeezed into [0.45, 0.55] whose true P(relevant) runs from 0.05 to 0.95: far
    from calibrated as they stand."""
    rng = random.Random(seed)
    raw, rel, groups = [], [], []
    for i in range(n):
        t = rng.random()
        raw.append(0.45 + 0.1 * t)
        rel.append(rng.random() < 0.05 + 0.9 * t)
        groups.append(f"q{i // 10}")
    return Pairs(raw, rel, groups)


def test_ece_of_a_hand_computed_case() -> None:
    # bin 0.1: predicted 0.1, observed 0.5 (gap 0.4); bin 0.9: predicted 0.9, observed 1 (0.1)
    assert expected_calibration_error([0.1, 0.1, 0.9, 0.9], [False, True, True, True]) == (
        pytest.approx(0.25)
    )
    assert expected_calibration_error([0.25, 0.75], [False, True]) == pytest.approx(0.25)
    points = reliability([0.05, 1.0], [False, True])
    assert [(p["low"], p["count"]) for p in points] == [(0.0, 1), (0.9, 1)]  # 1.0 in the top bin


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_fitted_map_lowers_ece_on_pairs_it_never_saw(method: str) -> None:
    train, test = synthetic(2000, seed=1), synthetic(2000, seed=2)
    calibration = fit(train, method, "ident", "model")  # type: ignore[arg-type]
    raw_ece = expected_calibration_error(test.raw, test.relevant)
    calibrated = [float(c) for c in calibration.apply(test.raw) if c is not None]
    assert raw_ece > 0.15
    assert expected_calibration_error(calibrated, test.relevant) < 0.05
    quality = calibration.meta["quality"]
    assert quality["ece_calibrated"] < quality["ece_raw"]
    assert quality["cv"]["folds"] == 5 and quality["cv"]["ece_calibrated"] < 0.06


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_the_map_is_strictly_increasing_so_the_models_order_stays(method: str) -> None:
    calibration = fit(synthetic(500, seed=3), method, "ident", "model")  # type: ignore[arg-type]
    raws = [i / 1000 for i in range(1001)]
    mapped = [calibration(r) for r in raws]
    assert all(b > a for a, b in itertools.pairwise(mapped))
    assert all(0.0 <= p <= 1.0 for p in mapped)
    assert calibration.apply([0.4, None]) == [calibration(0.4), None]


def test_isotonic_flat_steps_do_not_tie_products_the_model_told_apart() -> None:
    flat = Calibration("isotonic", "i", "m", {"x": [0.2, 0.8], "y": [0.5, 0.5]})
    assert flat(0.3) < flat(0.31) < flat(0.9)
    assert flat(0.3) == pytest.approx(0.5, abs=1e-5)


def test_fit_refuses_pairs_that_cannot_make_a_calibration() -> None:
    with pytest.raises(CalibrationFitError, match="every judged pair is relevant"):
        fit_map([0.1 * i for i in range(20)], [True] * 20, "isotonic")
    with pytest.raises(CalibrationFitError, match="needs 10"):
        fit_map([0.1, 0.9], [False, True], "platt")
    falling = [i / 40 for i in range(40)]
    with pytest.raises(CalibrationFitError, match="do not rise"):
        fit_map(falling, [r < 0.5 for r in falling], "platt")
    with pytest.raises(CalibrationFitError, match="do not rise"):
        fit_map(falling, [r < 0.5 for r in falling], "isotonic")


def test_file_round_trip_and_identity_check(tmp_path: Path) -> None:
    calibration = fit(synthetic(300, seed=4), "platt", "abc123", "all-MiniLM-L6-v2")
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(calibration.to_json()))
    loaded = load_calibration(path)
    assert loaded.score_identity == "abc123" and loaded.source == str(path)
    assert loaded.version.startswith("platt@") and len(loaded.version) == len("platt@") + 12
    assert [loaded(r) for r in (0.1, 0.5, 0.9)] == [calibration(r) for r in (0.1, 0.5, 0.9)]
    check_identity(loaded, "abc123", "all-MiniLM-L6-v2")
    with pytest.raises(ConfigError) as refused:
        check_identity(loaded, "fff999", "lychee-rerank-mm")
    message = refused.value.message
    assert "abc123" in message and "fff999" in message and str(path) in message


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "holds a JSON object"),
        (json.dumps({"format": "other"}).encode(), "not a calibration file"),
        (
            json.dumps({"format": "rerank-sidecar-calibration/1", "method": "platt"}).encode(),
            "missing score_identity, model, map",
        ),
        (
            json.dumps(
                {
                    "format": "rerank-sidecar-calibration/1",
                    "method": "isotonic",
                    "score_identity": "x",
                    "model": "m",
                    "map": {"x": [0.1, 0.5], "y": [0.9, 0.2]},
                }
            ).encode(),
            "must not decrease",
        ),
        (
            json.dumps(
                {
                    "format": "rerank-sidecar-calibration/1",
                    "method": "platt",
                    "score_identity": "x",
                    "model": "m",
                    "map": {"a": -2.0, "b": 0.0},
                }
            ).encode(),
            "a > 0",
        ),
        (
            json.dumps(
                {
                    "format": "rerank-sidecar-calibration/1",
                    "method": "spline",
                    "score_identity": "x",
                    "model": "m",
                    "map": {},
                }
            ).encode(),
            "method must be one of",
        ),
    ],
)
def test_a_bad_file_is_a_config_error_naming_it(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as refused:
        load_calibration(path)
    assert str(path) in refused.value.message and reason in refused.value.message


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read calibration file"):
        load_calibration(tmp_path / "nope.json")


def test_platt_is_stable_far_from_zero() -> None:
    steep = parse_calibration(
        {
            "format": "rerank-sidecar-calibration/1",
            "method": "platt",
            "score_identity": "x",
            "model": "m",
            "map": {"a": 2000.0, "b": -1000.0},
        }
    )
    assert steep(0.0) == pytest.approx(0.0) and steep(1.0) == pytest.approx(1.0)
    assert not math.isnan(steep(-5.0))


def dataset(n: int) -> Dataset:
    queries = [JudgedQuery(f"q{i}", f"query number {i}", {"p": 1.0}) for i in range(n)]
    return Dataset("d", {}, queries)


def test_halves_are_disjoint_cover_every_query_and_ignore_row_order() -> None:
    data = dataset(41)
    first, split1 = split_queries(data, 1, seed=5)
    second, split2 = split_queries(data, 2, seed=5)
    a, b = {q.text for q in first.queries}, {q.text for q in second.queries}
    assert not a & b and len(a | b) == 41
    assert (split1.kept, split1.other, split2.kept) == (21, 20, 20)
    assert first.name == "d-half1" and "half 1 of 2" in split1.describe()
    shuffled = Dataset("d", {}, list(reversed(data.queries)))
    assert {q.text for q in split_queries(shuffled, 1, seed=5)[0].queries} == a
    assert {q.text for q in split_queries(data, 1, seed=6)[0].queries} != a


def test_relevance_default_is_above_the_middle_of_the_label_range() -> None:
    data = Dataset("d", {}, [JudgedQuery("q", "t", {"a": 1.0, "b": 4.0, "c": 2.5, "d": 3.0})])
    default = Relevance.default_for(data)
    assert [default(v) for v in (1.0, 2.5, 3.0, 4.0)] == [False, False, True, True]
    given = Relevance.default_for(data, 4.0)
    assert [given(v) for v in (3.0, 4.0)] == [False, True] and given.describe() == "label >= 4"
    assert Relevance.from_json(default.to_json()) == default
    assert Relevance.from_json(given.to_json()) == given
