"""`rules tune`'s work (sidecar/evaluation/tuning.py): the eval's reranked order rebuilt from the
rules' ranking, the grid, the cross-validated choice, and the suggested file that keeps comments,
boosts, pins and bands."""

from __future__ import annotations

import random

import pytest

from sidecar.backends.base import Hit
from sidecar.evaluation.data import JudgedQuery
from sidecar.evaluation.judged import ScoredQuery
from sidecar.evaluation.tuning import (
    HEADER,
    Setting,
    diff,
    grid,
    reranked_order,
    suggested_text,
    tune,
)
from sidecar.rules import parse_rules
from sidecar.rules.store import DEFAULT_RULES


def scored(
    qid: str,
    engine: list[tuple[str, float]],
    scores: dict[str, float],
    labels: dict[str, float],
    missed: tuple[str, ...] = (),
) -> ScoredQuery:
    return ScoredQuery(
        query=JudgedQuery(qid, f"query {qid}", labels),
        text=f"query {qid}",
        ids=sorted(labels),
        raw=dict(scores),
        scores=dict(scores),
        engine=[Hit(i, s, {}) for i, s in engine],
        missed=list(missed),
        fields={i: {} for i in labels},
    )


def test_reranked_order_is_kept_then_dropped_in_engine_order_then_missed() -> None:
    rules = parse_rules(
        "version: 1\nblend: {model_weight: 1, engine_weight: 0}\ndrop: {below_model_score: 0.4}\n"
    ).rules
    query = scored(
        "q",
        [("a", 9.0), ("b", 5.0), ("c", 3.0), ("e", 1.0)],
        {"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.99, "e": 0.2},
        {"a": 1, "b": 4, "c": 3, "d": 4, "e": 1},
        missed=("d",),
    )
    assert reranked_order(rules, query, query.scores) == ["b", "c", "a", "e", "d"]


def synthetic(n: int, engine_is_right: bool, seed: int = 0) -> list[ScoredQuery]:
    """Queries whose labels the engine score orders perfectly (or backwards) while the model
    score is label plus noise."""
    rng = random.Random(seed)
    out = []
    for q in range(n):
        labels = {f"{q}-{i}": float(rng.randint(1, 4)) for i in range(8)}
        scores = {i: min(max(0.15 * v + rng.gauss(0, 0.25), 0.0), 1.0) for i, v in labels.items()}
        sign = 1 if engine_is_right else -1
        engine = sorted(((i, 10 + sign * v) for i, v in labels.items()), key=lambda h: -h[1])
        out.append(scored(str(q), engine, scores, labels))
    return out


def test_an_informative_engine_earns_weight_and_beats_the_model_alone() -> None:
    rules = parse_rules(DEFAULT_RULES.read_text()).rules
    result = tune(synthetic(40, engine_is_right=True), rules, folds=4, seed=1)
    assert result.best.engine_weight >= 0.3
    assert result.cross_validated.mean > result.model.mean + 0.05
    assert result.cross_validated.versus(result.model)["ci95"][0] > 0
    assert len(result.chosen) == 4 and result.folds == 4
    assert result.candidates[0].mean >= result.current.mean
    json_report = result.to_json()
    assert json_report["suggested"]["engine_weight"] == result.best.engine_weight
    assert {r["name"] for r in json_report["fixed"]} == {"current file", "model alone"}


def test_a_misleading_engine_is_tuned_out() -> None:
    rules = parse_rules(DEFAULT_RULES.read_text()).rules
    result = tune(synthetic(40, engine_is_right=False), rules, folds=5)
    assert result.best.engine_weight == 0.0
    assert result.cross_validated.mean > result.current.mean
    assert result.cross_validated.mean == pytest.approx(result.model.mean, abs=0.02)


def test_grid_starts_with_the_current_setting_and_holds_each_ranking_once() -> None:
    current = Setting(1.6, 0.4, "minmax", 0.4)  # ranks as 0.8 / 0.2
    settings = grid(current)
    assert settings[0] == current
    keys = [s.key for s in settings]
    assert len(keys) == len(set(keys))
    assert Setting(0.8, 0.2, "minmax", 0.4).key == current.key  # only the ratio counts
    assert Setting(1.0, 0.0, "none", None).key == Setting(1.0, 0.0, "minmax", None).key
    assert any(s.drop is None for s in settings) and any(
        s.normalization == "none" for s in settings
    )


def test_tune_needs_two_queries() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        tune(synthetic(1, True), parse_rules("version: 1\n").rules)


def test_suggested_file_keeps_comments_boosts_and_bands_and_says_what_changed() -> None:
    original = DEFAULT_RULES.read_text(encoding="utf-8")
    text = suggested_text(original, Setting(0.95, 0.05, "none", 0.3), [f"{HEADER}: test"])
    loaded = parse_rules(text).rules
    before = parse_rules(original).rules
    assert (loaded.blend.model_weight, loaded.blend.engine_weight) == (0.95, 0.05)
    assert loaded.blend.engine_normalization == "none" and loaded.drop.below_model_score == 0.3
    assert loaded.boosts == before.boosts and loaded.bands == before.bands
    assert "# Default merchandising rules" in text  # the file's own comment stays
    assert "model_weight: 0.95  # tuned: was 0.8" in text
    assert "below_model_score: 0.3  # tuned: was 0.4" in text
    changed = [line for line in diff(original, text, "a", "b").splitlines() if line[:1] in "+-"]
    assert len([line for line in changed if not line.startswith(("+++", "---"))]) == 9
    # tuned again: the old header goes, one new one comes; an unchanged value keeps its line
    again = suggested_text(text, Setting(0.95, 0.05, "none", None), [f"{HEADER}: again"])
    assert again.count(HEADER) == 1 and "below_model_score: null  # tuned: was 0.3" in again
    assert parse_rules(again).rules.drop.below_model_score is None


def test_a_file_without_blend_or_drop_gets_them_after_version() -> None:
    original = (
        "version: 1  # minimal\n"
        "pins: [{name: hero, query: {is: tent}, id: p1, position: 1}]\n"
        "boosts:\n"
        "  - name: stocked\n"
        "    when: {field: in_stock, eq: true}\n"
        "    multiply: 1.1\n"
    )
    text = suggested_text(original, Setting(0.7, 0.3, "minmax", None))
    loaded = parse_rules(text).rules
    assert loaded.blend.model_weight == 0.7 and loaded.drop.below_model_score is None
    assert loaded.pins[0].id == "p1" and loaded.boosts[0].multiply == 1.1
    assert text.index("blend") < text.index("drop") < text.index("pins")
    assert "# minimal" in text
