"""Rule kinds beyond blend/drop/boost: drop by field, pins, buries, scopes; and their errors."""

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from sidecar.rules import Candidate, RulesError, apply, check_rules, parse_rules
from sidecar.rules.ranking import compile_condition, matches


def yaml_dump(value: dict) -> str:
    out = io.StringIO()
    YAML(typ="safe").dump(value, out)
    return out.getvalue()


def rules(text: str):
    return parse_rules("version: 1\n" + text).rules


def cand(i: str, rank: int, model: float | None, **fields) -> Candidate:
    return Candidate(id=i, engine_rank=rank, engine_score=1.0, model_score=model, fields=fields)


def order(outcome) -> list[str]:
    return [r.candidate.id for r in outcome.ranked]


HITS = [
    cand("a", 0, 0.9, category="Boots", in_stock=True),
    cand("b", 1, 0.8, category="Socks", in_stock=False),
    cand("c", 2, 0.7, category="Boots", in_stock=True, condition="refurbished"),
    cand("d", 3, 0.6, category="Tents", in_stock=True),
]


def test_drop_by_field_condition_reports_it() -> None:
    out = apply(rules("drop: {when: {field: in_stock, eq: false}}\n"), HITS)
    assert order(out) == ["a", "c", "d"]
    assert [(f.rule, f.kind) for f in out.dropped[0].fired] == [("drop.when", "drop")]


def test_pin_moves_a_product_to_its_position_for_matching_queries_only() -> None:
    r = rules("pins: [{name: hero, query: {glob: '*boots*'}, id: d, position: 1}]\n")
    pinned = apply(r, HITS, "waterproof hiking Boots")
    assert order(pinned) == ["d", "a", "b", "c"]
    assert [(f.rule, f.kind, f.effect) for f in pinned.ranked[0].fired] == [
        ("hero", "pin", "position 1")
    ]
    assert order(apply(r, HITS, "tent")) == ["a", "b", "c", "d"]


def test_pin_rescues_a_dropped_product_and_past_the_end_goes_last() -> None:
    r = rules(
        "drop: {below_model_score: 0.65}\n"
        "pins:\n"
        "  - {name: p1, query: {is: boots}, id: d, position: 2}\n"
        "  - {name: p2, query: {is: boots}, id: b, position: 99}\n"
    )
    out = apply(r, HITS, "Boots")
    assert order(out) == ["a", "d", "c", "b"]
    assert out.dropped == []


def test_pin_query_patterns_exact_glob_regex() -> None:
    for pattern, query, hit in [
        ("{is: hiking boots}", "Hiking  Boots", True),
        ("{is: hiking boots}", "hiking boots women", False),
        ("{glob: 'hiking*'}", "hiking boots", True),
        ("{glob: 'hiking*'}", "boots hiking", False),
        ("{regex: '\\bboots?\\b'}", "women boot sale", True),
        ("{regex: '^tent'}", "boots", False),
    ]:
        r = rules(f"pins: [{{name: p, query: {pattern}, id: d, position: 1}}]\n")
        assert (order(apply(r, HITS, query))[0] == "d") is hit, (pattern, query)


def test_bury_moves_matching_hits_last_keeping_their_order() -> None:
    r = rules(
        "buries:\n"
        "  - {name: refurb, when: {field: condition, eq: refurbished}}\n"
        "  - {name: by-id, ids: [a]}\n"
    )
    out = apply(r, HITS)
    assert order(out) == ["b", "d", "a", "c"]
    assert out.ranked[-1].fired[0].rule == "refurb" and out.ranked[-1].fired[0].kind == "bury"


def test_scope_limits_a_boost_to_a_category_and_a_query_pattern() -> None:
    r = rules(
        "blend: {model_weight: 1, engine_weight: 0}\n"
        "boosts:\n"
        "  - name: tents-up\n"
        "    when: {field: in_stock, eq: true}\n"
        "    multiply: 2\n"
        "    scope: {category: Tents, query: {regex: camp}}\n"
    )
    camping = apply(r, HITS, "camping gear")
    assert order(camping)[0] == "d" and camping.ranked[0].final == pytest.approx(1.2)
    assert order(apply(r, HITS, "gear")) == ["a", "b", "c", "d"]  # query out of scope


def test_scoped_drop_and_bury() -> None:
    r = rules(
        "drop: {below_model_score: null, when: {field: in_stock, eq: false}, "
        "scope: {query: {glob: 'sock*'}}}\n"
        "buries: [{name: no-boots, when: {field: category, eq: Boots}, scope: {category: Boots}}]\n"
    )
    assert order(apply(r, HITS, "socks")) == ["d", "a", "c"]
    assert order(apply(r, HITS, "boots")) == ["b", "d", "a", "c"]


@pytest.mark.parametrize(
    ("text", "line", "column", "words"),
    [
        (
            "pins: [{name: p, query: {glob: '*', regex: x}, id: a, position: 1}]\n",
            2,
            18,
            "exactly one of is, glob, regex",
        ),
        (
            "pins:\n  - {name: p, query: {regex: '(unclosed'}, id: a, position: 1}\n",
            3,
            15,
            "regex does not compile",
        ),
        (
            "pins:\n  - {name: p, query: {is: x}, id: a, position: 0}\n",
            3,
            38,
            "greater than or equal to 1",
        ),
        ("buries:\n  - {name: b}\n", 3, 5, "needs when or ids"),
        (
            "boosts:\n  - name: b\n    when: {field: x, eq: 1}\n    add: 1\n    scope: {}\n",
            6,
            5,
            "needs category or query",
        ),
        (
            "boosts: [{name: x, when: {field: a, eq: 1}, add: 1}]\nburies: [{name: x, ids: [a]}]\n",
            1,
            1,
            "rule names must be unique: x",
        ),
        (
            "variants:\n  - {name: a, share: 0.7}\n  - {name: b, share: 0.4}\n",
            1,
            1,
            "shares add up to more than 1",
        ),
        ("variants:\n  - {name: default}\n", 1, 1, "'default' names the base rules"),
        ("variants:\n  - {name: a, shares: 0.5}\n", 3, 15, "unknown key 'shares'"),
        (
            "variants:\n  - {name: a, boosts: [{name: q, when: {field: x}, add: 1}]}\n",
            3,
            34,
            "needs one of eq, in, gte",
        ),
    ],
)
def test_errors_carry_line_column_and_reason(text, line, column, words) -> None:
    with pytest.raises(RulesError) as err:
        parse_rules("version: 1\n" + text, "r.yaml")
    problems = err.value.problems
    assert any(p.line == line and p.column == column and words in p.reason for p in problems), [
        str(p) for p in problems
    ]


def test_check_names_fields_missing_from_the_field_map() -> None:
    text = (
        "version: 1\n"
        "boosts:\n"
        "  - name: b\n"
        "    when: {all: [{field: model_score, gte: 0.5}, {field: salez, gte: 1}]}\n"
        "    add: 1\n"
        "variants:\n"
        "  - name: v\n"
        "    buries: [{name: x, when: {field: colour, eq: red}, scope: {category: A}}]\n"
    )
    problems = check_rules(text, "r.yaml", ["sales", "color"])
    assert [(p.line, p.column, p.path) for p in problems] == [
        (3, 5, "boosts[0]"),
        (8, 14, "variants[0].buries[0]"),
    ]
    assert "'salez' is not in the field map" in problems[0].reason
    assert "'category', 'colour'" in problems[1].reason
    assert check_rules(text, "r.yaml") == []  # without a field map only the schema is checked


def test_a_condition_that_is_not_a_mapping_says_so() -> None:
    with pytest.raises(RulesError) as err:
        parse_rules("version: 1\nboosts: [{name: q, when: 5, add: 1}]\n", "r.yaml")
    assert [str(p) for p in err.value.problems] == [
        "r.yaml:2:20: boosts[0].when: expected a mapping, got int"
    ]


def test_the_documented_example_validates_against_the_default_field_map() -> None:
    import re
    from pathlib import Path

    from sidecar.config import FieldMap

    doc = Path(__file__).parents[2] / "docs" / "rules.md"
    example = re.search(r"```yaml\n(.*?)```", doc.read_text(), re.S)
    assert example is not None
    assert check_rules(example[1], "docs/rules.md", FieldMap().business) == []
    loaded = parse_rules(example[1])
    assert [v.name for v in loaded.rules.variants] == ["stronger-best-sellers", "no-threshold"]


# Conditions are compiled once per rules file; the compiled form must answer as `matches` does.
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(-5, 5),
    st.just(float("nan")),
    st.sampled_from(["Boots", "Socks", ""]),
    st.lists(st.sampled_from(["Boots", "Socks"]), max_size=2),
)
_scalars = st.one_of(st.integers(-5, 5), st.sampled_from(["Boots", "Socks"]), st.booleans())


@st.composite
def _field_conditions(draw: st.DrawFn) -> dict:
    tests = {
        "eq": _scalars,
        "in": st.lists(_scalars, min_size=1, max_size=3),
        "gte": st.floats(-5, 5),
        "lte": st.floats(-5, 5),
        "exists": st.booleans(),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(tests)), min_size=1, max_size=3, unique=True))
    return {"field": draw(st.sampled_from(["x", "y"])), **{k: draw(tests[k]) for k in chosen}}


_conditions = st.recursive(
    _field_conditions(),
    lambda inner: st.one_of(
        st.builds(lambda parts: {"all": parts}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda parts: {"any": parts}, st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=5,
)


@settings(max_examples=300, deadline=None)
@given(
    condition=_conditions,
    view=st.dictionaries(st.sampled_from(["x", "y"]), _values, max_size=2),
)
def test_a_compiled_condition_answers_as_matches_does(condition: dict, view: dict) -> None:
    parsed = parse_rules("version: 1\n" + yaml_dump({"drop": {"when": condition}})).rules
    when = parsed.drop.when
    assert compile_condition(when)(view) == matches(when, view)


def test_each_rules_file_is_applied_with_its_own_conditions() -> None:
    low = rules("boosts: [{name: b, when: {field: sales, gte: 10}, multiply: 2}]\n")
    high = rules("boosts: [{name: b, when: {field: sales, gte: 100}, multiply: 2}]\n")
    hit = [cand("a", 0, 0.9, sales=50)]
    for _ in range(2):  # the second time from the kept plans
        assert [f.rule for f in apply(low, hit).ranked[0].fired] == ["b"]
        assert apply(high, hit).ranked[0].fired == ()


def test_rules_files_applied_from_several_threads_each_get_their_own_plan() -> None:
    """More files than the plans kept, from several threads at once: evictions race with
    look-ups, and every answer is still its own file's."""
    from concurrent.futures import ThreadPoolExecutor

    files = [
        rules(f"boosts: [{{name: b{n}, when: {{field: sales, gte: {n}}}, multiply: 2}}]\n")
        for n in range(40)
    ]
    hit = [cand("a", 0, 0.9, sales=20)]

    def fired(n: int) -> tuple[int, bool]:
        return n, bool(apply(files[n], hit).ranked[0].fired)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(fired, [n % 40 for n in range(2000)]))
    assert all(boosted == (n <= 20) for n, boosted in results)
