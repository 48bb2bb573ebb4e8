"""Ranking by the rules: a pure function of (scored hits, query text, rules). No I/O, no clock, no
randomness.

Order of work: normalize the engine score over the window, then per hit blend it with the model
score, drop, boost, band; then order the kept hits by final score, move buried hits to the end, and
put pinned hits at their positions. A hit without a model score (scoring timed out or failed) takes
its normalized engine score in the model's place, so it keeps its engine rank relative to its peers.
Rules with a scope fire only for hits of the scope's categories and queries matching its patterns.

A drop never empties the page: when fewer than `drop.min_results` hits would be left, the best of
the dropped (by final score) are kept after the others, each marked `kept_by_min_results`. Only
hits the engine matched count (`matched`): a hybrid search's vector leg always brings its nearest
neighbours, even for "qwxzvbn", so a hit it alone found is shown on its own score or not at all.

When the query names a product type (`query_type`, recognised by sidecar.product_types), each
hit's conditions also read `query_type`, its `product_type` and `type_match` (`same`,
`accessory`, `other`), so a rule can put a product before its accessories.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from sidecar.product_types import QueryType
from sidecar.rules.schema import (
    CATEGORY_FIELD,
    AllOf,
    AnyOf,
    Band,
    Condition,
    FieldCondition,
    Pin,
    QueryPattern,
    RulesFile,
    Scope,
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A hit going into the rules: engine rank and score, model score if any, business fields."""

    id: str
    engine_rank: int
    engine_score: float
    model_score: float | None
    fields: Mapping[str, Any] = field(default_factory=dict)
    product_type: str | None = None  # what kind of product it is (fields.product_type)
    matched: bool = True  # the engine's text search found it (not only the vector leg)


@dataclass(frozen=True, slots=True)
class Fired:
    rule: str
    kind: str  # drop | boost | bury | pin | keep (a dropped hit kept by drop.min_results)
    effect: str  # e.g. "x1.2", "+0.05", "model_score 0.31 < 0.4", "position 1"


@dataclass(frozen=True, slots=True)
class Ranked:
    candidate: Candidate
    engine_norm: float
    blended: float
    final: float
    band: str
    fired: tuple[Fired, ...]
    type_match: str | None = None  # same | accessory | other; None: no type on one side
    kept_by_min_results: bool = False  # dropped by a rule, kept to fill drop.min_results


@dataclass(frozen=True, slots=True)
class Outcome:
    ranked: list[Ranked]  # what the page shows, kept_by_min_results ones included
    dropped: list[Ranked]  # dropped and not shown
    query_type: QueryType | None = None

    @property
    def kept_despite_drop(self) -> int:
        return sum(r.kept_by_min_results for r in self.ranked)


def apply(
    rules: RulesFile,
    candidates: Sequence[Candidate],
    query_text: str = "",
    query_type: QueryType | None = None,
) -> Outcome:
    plan = _plan_of(rules)
    norms = _normalize([c.engine_score for c in candidates], rules.blend.engine_normalization)
    model_weight, engine_weight = rules.blend.model_weight, rules.blend.engine_weight
    total = model_weight + engine_weight
    pins = {p.id: p for p in rules.pins if query_matches(p.query, query_text)}
    # the query is the same for every hit: decide each rule's query scope once
    boosts = [(b, fired) for b, fired in plan.boosts if _query_in_scope(b.rule.scope, query_text)]
    buries = [(b, fired) for b, fired in plan.buries if _query_in_scope(b.rule.scope, query_text)]
    drop_when = plan.drop_when if _query_in_scope(rules.drop.scope, query_text) else None
    threshold = rules.drop.below_model_score
    kept: list[Ranked] = []
    buried: set[str] = set()
    dropped: list[Ranked] = []
    for cand, norm in zip(candidates, norms, strict=True):
        score = cand.model_score
        blended = (model_weight * (norm if score is None else score) + engine_weight * norm) / total
        view: dict[str, Any] | None = None  # what the conditions read, made when one does
        match = query_type.relation(cand.product_type) if query_type is not None else None
        drop: Fired | None = None
        if threshold is not None and score is not None and score < threshold:
            drop = Fired("drop.below_model_score", "drop", f"model_score {score:.3f} < {threshold}")
        elif drop_when is not None:
            view = _view(cand, norm, blended, query_type, match)
            if drop_when.applies(view):
                drop = _DROPPED_WHEN
        pin = pins.get(cand.id) if pins else None
        if drop is not None and pin is not None:  # a merchandiser's pin outranks a drop
            drop = None
        final = blended
        fired: tuple[Fired, ...]
        if drop is None:
            found: list[Fired] = []
            if boosts or buries:
                seen = view if view is not None else _view(cand, norm, blended, query_type, match)
                for boost, effect in boosts:
                    if boost.applies(seen):
                        final = final * boost.rule.multiply + boost.rule.add
                        found.append(effect)
                for bury, effect in buries if pin is None else ():
                    if cand.id in bury.ids or bury.applies(seen):
                        found.append(effect)
                        buried.add(cand.id)
                        break
            if pin is not None:
                found.append(Fired(pin.name, "pin", f"position {pin.position}"))
            fired = tuple(found)
        else:
            fired = (drop,)
        ranked = Ranked(cand, norm, blended, final, _band(plan.bands, score), fired, match)
        (dropped if drop else kept).append(ranked)
    kept.sort(key=lambda r: (r.candidate.id in buried, -r.final, r.candidate.engine_rank))
    matched = sum(c.matched for c in candidates)
    short = min(rules.drop.min_results, matched) - len(kept)
    if short > 0 and dropped:  # the best matched of the dropped fill the page, after the others
        dropped.sort(key=lambda r: (not r.candidate.matched, -r.final, r.candidate.engine_rank))
        fill = [r for r in dropped[:short] if r.candidate.matched]
        kept += [_kept(r, rules.drop.min_results) for r in fill]
        dropped = dropped[len(fill) :]
    return Outcome(ranked=_place_pins(kept, pins), dropped=dropped, query_type=query_type)


def _kept(ranked: Ranked, least: int) -> Ranked:
    note = Fired("drop.min_results", "keep", f"kept: fewer than {least} hits left otherwise")
    return replace(ranked, fired=(*ranked.fired, note), kept_by_min_results=True)


def _view(
    cand: Candidate,
    norm: float,
    blended: float,
    query_type: QueryType | None = None,
    match: str | None = None,
) -> dict[str, Any]:
    """What a condition reads of a hit: its business fields, its scores, and its product type
    beside the query's."""
    view = {
        **cand.fields,
        "model_score": cand.model_score,
        "engine_score": norm,
        "blended_score": blended,
    }
    if query_type is not None:
        view["query_type"] = query_type.name
        view["type_match"] = match
    if cand.product_type is not None:
        view["product_type"] = cand.product_type
    return view


Predicate = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class _Check:
    """A rule's category scope and condition, compiled: `applies(view)` is
    `_category_in_scope(scope, view) and matches(when, view)` (no condition: False)."""

    rule: Any  # the Boost, Bury or Drop it was made from
    when: Predicate | None
    ids: frozenset[str] = frozenset()  # a bury's ids

    @classmethod
    def of(cls, rule: Any, when: Condition | None) -> _Check:
        ids = frozenset(getattr(rule, "ids", None) or ())
        return cls(rule, None if when is None else compile_condition(when), ids)

    def applies(self, view: Mapping[str, Any]) -> bool:
        return (
            self.when is not None and _category_in_scope(self.rule.scope, view) and self.when(view)
        )


@dataclass(frozen=True)
class _Plan:
    """A rules file made ready for per-hit work: conditions compiled, bands sorted."""

    boosts: tuple[tuple[_Check, Fired], ...]  # each with what it reports when it fires
    buries: tuple[tuple[_Check, Fired], ...]
    drop_when: _Check | None
    bands: tuple[Band, ...]

    @classmethod
    def of(cls, rules: RulesFile) -> _Plan:
        return cls(
            boosts=tuple(
                (_Check.of(b, b.when), Fired(b.name, "boost", _effect(b.multiply, b.add)))
                for b in rules.boosts
            ),
            buries=tuple(
                (_Check.of(b, b.when), Fired(b.name, "bury", "moved below unburied hits"))
                for b in rules.buries
            ),
            drop_when=None if rules.drop.when is None else _Check.of(rules.drop, rules.drop.when),
            bands=tuple(sorted(rules.bands, key=lambda b: -b.gte)),
        )


# A rules file is read for every search: its plan is made once, kept by identity (the file
# object, held here, so its id is never another's) for the last few files (variants, previews).
_PLANS: OrderedDict[int, tuple[RulesFile, _Plan]] = OrderedDict()
_PLANS_KEPT = 32
_PLANS_LOCK = threading.Lock()
_DROPPED_WHEN = Fired("drop.when", "drop", "condition matched")


def _plan_of(rules: RulesFile) -> _Plan:
    with _PLANS_LOCK:  # apply is pure and may be called from several threads
        kept = _PLANS.get(id(rules))
        if kept is not None and kept[0] is rules:
            _PLANS.move_to_end(id(rules))
            return kept[1]
    plan = _Plan.of(rules)
    with _PLANS_LOCK:
        _PLANS[id(rules)] = (rules, plan)
        while len(_PLANS) > _PLANS_KEPT:
            _PLANS.popitem(last=False)
    return plan


def _place_pins(ordered: list[Ranked], pins: Mapping[str, Pin]) -> list[Ranked]:
    """Pinned hits go to their positions (by position, so two pins never fight); a position
    past the end puts the hit last."""
    pinned = sorted(
        (r for r in ordered if r.candidate.id in pins), key=lambda r: pins[r.candidate.id].position
    )
    out = [r for r in ordered if r.candidate.id not in pins]
    for r in pinned:
        out.insert(min(pins[r.candidate.id].position - 1, len(out)), r)
    return out


def band_of(rules: RulesFile, score: float | None) -> str:
    return _band(sorted(rules.bands, key=lambda b: -b.gte), score)


def _band(bands: Sequence[Band], score: float | None) -> str:
    """`bands` sorted from the highest threshold down."""
    if score is None:
        return "unscored"
    for band in bands:
        if score >= band.gte:
            return band.name
    return "none"


def query_matches(pattern: QueryPattern, query_text: str) -> bool:
    text = " ".join(query_text.split())
    compiled = _compiled(pattern)
    if pattern.regex is not None:
        return compiled.search(text) is not None
    return compiled.match(text.casefold() if pattern.glob is not None else text) is not None


@lru_cache(maxsize=1024)
def _compiled(pattern: QueryPattern) -> re.Pattern[str]:
    return pattern.compiled()


def _query_in_scope(scope: Scope | None, query_text: str) -> bool:
    return (
        scope is None or not scope.query or any(query_matches(p, query_text) for p in scope.query)
    )


def _category_in_scope(scope: Scope | None, view: Mapping[str, Any]) -> bool:
    return scope is None or not scope.category or view.get(CATEGORY_FIELD) in scope.category


def matches(condition: Condition, view: Mapping[str, Any]) -> bool:
    """Whether `view` meets `condition`: the definition, read straight from the schema
    (`compile_condition` is its fast form, checked against it by tests/unit/test_rules_kinds)."""
    if isinstance(condition, AllOf):
        return all(matches(c, view) for c in condition.all)
    if isinstance(condition, AnyOf):
        return any(matches(c, view) for c in condition.any)
    return _field_matches(condition, view.get(condition.field))


def compile_condition(condition: Condition) -> Predicate:
    """`matches(condition, view)` as a function of the view, its dispatch done once."""
    if isinstance(condition, AllOf):
        every = tuple(map(compile_condition, condition.all))
        return lambda view: all(part(view) for part in every)
    if isinstance(condition, AnyOf):
        some = tuple(map(compile_condition, condition.any))
        return lambda view: any(part(view) for part in some)
    name, cond = condition.field, condition
    tests = (cond.eq, cond.in_, cond.gte, cond.lte, cond.exists)
    floor = cond.gte
    if floor is not None and sum(t is not None for t in tests) == 1:  # the usual "at least"
        least: float = floor

        def at_least(view: Mapping[str, Any]) -> bool:
            value: Any = view.get(name)
            kind = type(value)
            if kind is float or kind is int:  # the usual values, without isinstance
                return bool(value >= least)
            return value is not None and _is_number(value) and bool(value >= least)

        return at_least
    return lambda view: _field_matches(cond, view.get(name))


def _field_matches(cond: FieldCondition, value: Any) -> bool:
    if cond.exists is not None and (value is not None) != cond.exists:
        return False
    if value is None:  # every other test needs a value; a missing field never matches them
        return cond.exists is not None and all(
            t is None for t in (cond.eq, cond.in_, cond.gte, cond.lte)
        )
    if cond.eq is not None and value != cond.eq:
        return False
    if cond.in_ is not None and value not in cond.in_:
        return False
    if cond.gte is not None and not (_is_number(value) and value >= cond.gte):
        return False
    return cond.lte is None or (_is_number(value) and value <= cond.lte)


def _normalize(scores: Sequence[float], how: str) -> list[float]:
    if how == "none" or not scores:
        return [float(s) for s in scores]
    low, high = min(scores), max(scores)
    if high - low <= 1e-12:  # one hit, or all tied: all equally good
        return [1.0] * len(scores)
    return [(s - low) / (high - low) for s in scores]


def _effect(multiply: float, add: float) -> str:
    parts = []
    if multiply != 1.0:
        parts.append(f"x{multiply:g}")
    if add:
        parts.append(f"{add:+g}")
    return " ".join(parts)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
