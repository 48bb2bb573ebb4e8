"""drop.min_results (no empty page from the rules) and the product-type signal the rules read
(type_match), on plain data."""

from __future__ import annotations

import pytest

from sidecar.product_types import ProductType, QueryType, TypeMatcher
from sidecar.rules import Candidate, RulesError, apply, parse_rules
from sidecar.rules.loader import check_rules
from sidecar.rules.store import DEFAULT_RULES


def rules(text: str):
    return parse_rules(text).rules


def cand(i: str, rank: int, model: float | None, kind: str | None = None, **fields) -> Candidate:
    return Candidate(i, rank, 10.0 - rank, model, fields, product_type=kind)


LOW = [cand(x, n, 0.1 + n / 100) for n, x in enumerate("abcde")]  # all below 0.4


def test_min_results_keeps_the_best_of_the_dropped_flagged() -> None:
    out = apply(rules("version: 1\ndrop: {below_model_score: 0.4, min_results: 3}\n"), LOW)
    assert [r.candidate.id for r in out.ranked] == ["a", "b", "c"]  # by final score
    assert all(r.kept_by_min_results for r in out.ranked)
    assert out.kept_despite_drop == 3 and [r.candidate.id for r in out.dropped] == ["d", "e"]
    fired = out.ranked[0].fired
    assert [f.kind for f in fired] == ["drop", "keep"] and fired[1].rule == "drop.min_results"


def test_min_results_fills_up_after_the_kept_and_never_past_what_was_found() -> None:
    text = "version: 1\ndrop: {below_model_score: 0.4, min_results: 3}\n"
    mixed = [cand("a", 0, 0.2), cand("b", 1, 0.9), cand("c", 2, 0.3), cand("d", 3, 0.1)]
    out = apply(rules(text), mixed)
    # blended: a 0.8*0.2 + 0.2*1.0 = 0.36 (top of the engine), c 0.8*0.3 + 0.2*0.33 = 0.31
    assert [(r.candidate.id, r.kept_by_min_results) for r in out.ranked] == [
        ("b", False),
        ("a", True),
        ("c", True),
    ]
    assert out.kept_despite_drop == 2
    two = apply(rules(text), LOW[:2])
    assert len(two.ranked) == 2 and not two.dropped
    enough = apply(rules(text), [cand(x, n, 0.9) for n, x in enumerate("abcd")])
    assert enough.kept_despite_drop == 0 and len(enough.ranked) == 4


def test_min_results_never_fills_the_page_with_what_only_the_vector_leg_found() -> None:
    # "qwxzvbn": the engine's text search matches nothing, the vector leg brings its nearest
    # neighbours all the same; none may be shown on min_results' account
    text = "version: 1\ndrop: {below_model_score: 0.4, min_results: 3}\n"
    nearest = [
        Candidate(x, n, 0.02 - n / 1000, 0.1 + n / 100, matched=False)
        for n, x in enumerate("abcde")
    ]
    out = apply(rules(text), nearest)
    assert out.ranked == [] and len(out.dropped) == 5
    # beside one hit the text search matched, that one fills the page and the others do not
    mixed = [*nearest[:2], Candidate("m", 2, 0.01, 0.05, matched=True)]
    out = apply(rules(text), mixed)
    assert [(r.candidate.id, r.kept_by_min_results) for r in out.ranked] == [("m", True)]
    # a vector-only hit above the threshold is shown on its own score
    good = apply(rules(text), [Candidate("v", 0, 0.02, 0.9, matched=False)])
    assert [r.candidate.id for r in good.ranked] == ["v"] and good.kept_despite_drop == 0


def test_min_results_zero_or_unset_drops_whatever_the_rules_say() -> None:
    for text in ("version: 1\n", "version: 1\ndrop: {min_results: 0}\n"):
        out = apply(rules(text), LOW)
        assert out.ranked == [] and len(out.dropped) == 5 and out.kept_despite_drop == 0


def test_min_results_keeps_hits_dropped_by_a_condition_too() -> None:
    text = (
        "version: 1\ndrop: {below_model_score: null, min_results: 1, "
        "when: {field: in_stock, eq: false}}\n"
    )
    hits = [cand("a", 0, 0.5, in_stock=False), cand("b", 1, 0.9, in_stock=False)]
    out = apply(rules(text), hits)
    assert [r.candidate.id for r in out.ranked] == ["b"] and out.ranked[0].kept_by_min_results


def test_min_results_is_checked_and_the_bundled_rules_keep_three() -> None:
    with pytest.raises(RulesError):
        parse_rules("version: 1\ndrop: {min_results: -1}\n")
    bundled = parse_rules(DEFAULT_RULES.read_text(encoding="utf-8")).rules
    assert bundled.drop.min_results == 3


TYPES = TypeMatcher(
    [
        ProductType("hiking boots", ("hiking boot",)),
        ProductType("waterproofing spray", ("waterproofing",), "consumable", ("hiking boots",)),
        ProductType("rain jacket"),
    ]
)
BURY = "version: 1\nburies:\n  - {name: acc, when: {field: type_match, eq: accessory}}\n"


def test_type_match_buries_the_accessories_of_the_type_the_query_names() -> None:
    hits = [
        cand("spray", 0, 0.8, "waterproofing spray"),
        cand("boot", 1, 0.7, "hiking boots"),
        cand("jacket", 2, 0.6, "rain jacket"),
        cand("untyped", 3, 0.5),
    ]
    named = TYPES.recognise("waterproof hiking boots")
    assert named == QueryType("hiking boots", "hiking boots", frozenset({"waterproofing spray"}))
    out = apply(rules(BURY), hits, "waterproof hiking boots", named)
    assert [r.candidate.id for r in out.ranked] == ["boot", "jacket", "untyped", "spray"]
    by_id = {r.candidate.id: r for r in out.ranked}
    assert by_id["spray"].type_match == "accessory" and by_id["spray"].fired[0].rule == "acc"
    assert by_id["boot"].type_match == "same" and by_id["jacket"].type_match == "other"
    assert by_id["untyped"].type_match is None and out.query_type == named
    # a query naming no type, or the accessory itself, moves nothing
    plain = apply(rules(BURY), hits, "something dry", TYPES.recognise("something dry"))
    assert plain.ranked[0].candidate.id == "spray"
    spray = apply(rules(BURY), hits, "boot waterproofing", TYPES.recognise("boot waterproofing"))
    assert spray.query_type is not None and spray.query_type.name == "waterproofing spray"
    assert spray.ranked[0].candidate.id == "spray"


def test_type_match_is_a_condition_any_rule_can_weigh() -> None:
    text = (
        "version: 1\nboosts:\n  - {name: half, when: {field: type_match, eq: accessory}, "
        "multiply: 0.5}\n  - {name: q, when: {field: query_type, eq: hiking boots}, add: 0.01}\n"
    )
    hits = [cand("spray", 0, 0.8, "waterproofing spray"), cand("boot", 1, 0.6, "hiking boots")]
    out = apply(rules(text), hits, "hiking boots", TYPES.recognise("hiking boots"))
    by_id = {r.candidate.id: r for r in out.ranked}
    assert [f.rule for f in by_id["spray"].fired] == ["half", "q"]
    assert [r.candidate.id for r in out.ranked] == ["boot", "spray"]


def test_rules_check_knows_the_type_fields() -> None:
    assert check_rules(BURY, "r.yaml", known_fields=["sales"]) == []
    bad = BURY.replace("type_match", "typ_match")
    assert check_rules(bad, "r.yaml", known_fields=["sales"])
