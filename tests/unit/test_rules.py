"""Ranking by the rules and the rules file loader, on plain data."""

import pytest

from sidecar.rules import Candidate, RulesError, apply, parse_rules
from sidecar.rules.store import DEFAULT_RULES


def rules(text: str):
    return parse_rules(text).rules


def cand(i: str, rank: int, engine: float, model: float | None, **fields) -> Candidate:
    return Candidate(id=i, engine_rank=rank, engine_score=engine, model_score=model, fields=fields)


BASE = "version: 1\n"


def test_blend_uses_minmax_normalized_engine_score() -> None:
    r = rules(
        BASE + "blend: {model_weight: 0.5, engine_weight: 0.5}\ndrop: {below_model_score: null}\n"
    )
    out = apply(r, [cand("a", 0, 10.0, 0.2), cand("b", 1, 5.0, 0.9), cand("c", 2, 0.0, 0.5)])
    by_id = {x.candidate.id: x for x in out.ranked}
    assert by_id["a"].engine_norm == 1.0 and by_id["c"].engine_norm == 0.0
    assert by_id["b"].blended == pytest.approx(0.5 * 0.9 + 0.5 * 0.5)
    assert [x.candidate.id for x in out.ranked] == ["b", "a", "c"]


def test_drop_below_threshold_reports_the_rule() -> None:
    out = apply(rules(BASE), [cand("a", 0, 3.0, 0.39), cand("b", 1, 2.0, 0.41)])
    assert [x.candidate.id for x in out.ranked] == ["b"]
    assert out.dropped[0].fired[0].rule == "drop.below_model_score"
    assert "0.390 < 0.4" in out.dropped[0].fired[0].effect


def test_boost_fires_only_when_all_conditions_hold() -> None:
    text = (
        BASE
        + """
blend: {model_weight: 1, engine_weight: 0}
boosts:
  - name: best-sellers
    when: {all: [{field: model_score, gte: 0.75}, {field: sales, gte: 1000}]}
    multiply: 1.2
"""
    )
    out = apply(
        rules(text),
        [
            cand("hot", 0, 1, 0.8, sales=5000),
            cand("cold", 1, 1, 0.8, sales=10),
            cand("weak", 2, 1, 0.6, sales=5000),
        ],
    )
    by_id = {x.candidate.id: x for x in out.ranked}
    assert by_id["hot"].final == pytest.approx(0.96)
    assert [f.rule for f in by_id["hot"].fired] == ["best-sellers"]
    assert by_id["cold"].fired == () and by_id["weak"].fired == ()


@pytest.mark.parametrize(
    ("condition", "fields", "fires"),
    [
        ("{field: in_stock, eq: false}", {"in_stock": False}, True),
        ("{field: in_stock, eq: false}", {"in_stock": True}, False),
        ("{field: category, in: [A, B]}", {"category": "B"}, True),
        ("{field: price, lte: 10}", {"price": 12.5}, False),
        ("{field: promo, exists: true}", {}, False),
        ("{field: promo, exists: false}", {}, True),
        (
            "{any: [{field: price, lte: 10}, {field: brand, eq: X}]}",
            {"price": 50, "brand": "X"},
            True,
        ),
        ("{field: price, gte: 1}", {"price": "cheap"}, False),  # a string is never >= a number
    ],
)
def test_conditions(condition: str, fields: dict, fires: bool) -> None:
    text = BASE + f"boosts:\n  - name: b\n    when: {condition}\n    add: 0.5\n"
    out = apply(rules(text), [cand("x", 0, 1.0, 0.9, **fields)])
    assert bool(out.ranked[0].fired) is fires


def test_bands_follow_lychee_reading() -> None:
    out = apply(
        rules(BASE + "drop: {below_model_score: null}\n"),
        [cand("s", 0, 1, 0.75), cand("m", 1, 1, 0.6), cand("w", 2, 1, 0.2), cand("u", 3, 1, None)],
    )
    assert {x.candidate.id: x.band for x in out.ranked} == {
        "s": "strong",
        "m": "medium",
        "w": "weak",
        "u": "unscored",
    }


def test_unscored_hits_keep_engine_order_and_are_not_dropped() -> None:
    out = apply(
        rules(BASE), [cand("a", 0, 9.0, None), cand("b", 1, 5.0, None), cand("c", 2, 1.0, None)]
    )
    assert [x.candidate.id for x in out.ranked] == ["a", "b", "c"]
    assert out.dropped == []


def test_ties_keep_engine_order() -> None:
    out = apply(rules(BASE), [cand("a", 0, 1.0, 0.7), cand("b", 1, 1.0, 0.7)])
    assert [x.candidate.id for x in out.ranked] == ["a", "b"]


def test_default_rules_file_validates() -> None:
    loaded = parse_rules(DEFAULT_RULES.read_text())
    assert loaded.rules.drop.below_model_score == 0.4 and len(loaded.digest) == 12
    assert loaded.version == f"default@{loaded.digest}"


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        ("version: 1\nblend:\n  model_wieght: 0.5\n", 3, 3, "unknown key 'model_wieght'"),
        ("version: 2\n", 1, 1, "version must be 1"),
        ("blend: {}\n", 1, 1, "missing required key 'version'"),
        (
            "version: 1\nboosts:\n  - name: a\n    when: {field: sales, gte: 1}\n"
            "    multiply: -1\n",
            5,
            5,
            "greater than 0",
        ),
        (
            "version: 1\nboosts:\n  - name: a\n    when: {field: sales}\n    add: 1\n",
            4,
            5,
            "needs one of eq, in, gte, lte, exists",
        ),
        ("version: 1\nblend: [\n", 3, 1, "not valid YAML"),
        ("version: 1\ndrop: {below_model_score: 1.5}\n", 2, 8, "less than or equal to 1"),
    ],
)
def test_errors_carry_line_column_and_reason(text: str, line: int, column: int, words: str) -> None:
    with pytest.raises(RulesError) as err:
        parse_rules(text, "rules.yaml")
    problems = err.value.problems
    assert any(p.line == line and p.column == column and words in p.reason for p in problems), [
        str(p) for p in problems
    ]
    assert str(problems[0]).startswith("rules.yaml:")
