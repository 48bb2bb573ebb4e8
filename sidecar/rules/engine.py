"""The rules engine: a pure function of (scored hits, query text, rules). No I/O, no clock, no
randomness.

Order of work: normalize the engine score over the window, then per hit blend it with the model
score, drop, boost, band; then order the kept hits by final score, move buried hits to the end, and
put pinned hits at their positions. A hit without a model score (scoring timed out or failed) takes
its normalized engine score in the model's place, so it keeps its engine rank relative to its peers.
Rules with a scope fire only for hits of the scope's categories and queries matching its patterns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sidecar.rules.schema import (
    CATEGORY_FIELD,
    AllOf,
    AnyOf,
    Band,
    Bury,
    Condition,
    FieldCondition,
    Pin,
    QueryPattern,
    RulesFile,
    Scope,
)


@dataclass(frozen=True)
class Candidate:
    """A hit going into the rules: engine rank and score, model score if any, business fields."""

    id: str
    engine_rank: int
    engine_score: float
    model_score: float | None
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Fired:
    rule: str
    kind: str  # drop | boost | bury | pin
    effect: str  # e.g. "x1.2", "+0.05", "model_score 0.31 < 0.4", "position 1"


@dataclass(frozen=True)
class Ranked:
    candidate: Candidate
    engine_norm: float
    blended: float
    final: float
    band: str
    fired: tuple[Fired, ...]


@dataclass(frozen=True)
class Outcome:
    ranked: list[Ranked]
    dropped: list[Ranked]


def apply(rules: RulesFile, candidates: Sequence[Candidate], query_text: str = "") -> Outcome:
    norms = _normalize([c.engine_score for c in candidates], rules.blend.engine_normalization)
    weights = rules.blend
    total = weights.model_weight + weights.engine_weight
    pins = {p.id: p for p in rules.pins if query_matches(p.query, query_text)}
    # the query is the same for every hit: decide each rule's query scope once
    boosts = [b for b in rules.boosts if _query_in_scope(b.scope, query_text)]
    buries = [b for b in rules.buries if _query_in_scope(b.scope, query_text)]
    drop_when = rules.drop.when if _query_in_scope(rules.drop.scope, query_text) else None
    bands = sorted(rules.bands, key=lambda b: -b.gte)
    kept: list[Ranked] = []
    buried: set[str] = set()
    dropped: list[Ranked] = []
    for cand, norm in zip(candidates, norms, strict=True):
        model = cand.model_score if cand.model_score is not None else norm
        blended = (weights.model_weight * model + weights.engine_weight * norm) / total
        view = {
            **cand.fields,
            "model_score": cand.model_score,
            "engine_score": norm,
            "blended_score": blended,
        }
        fired: list[Fired] = []
        drop_reason = _drop_reason(rules, drop_when, cand, view)
        pin = pins.get(cand.id)
        if drop_reason is not None and pin is not None:  # a merchandiser's pin outranks a drop
            drop_reason = None
        final = blended
        if drop_reason is None:
            for boost in boosts:
                if _category_in_scope(boost.scope, view) and matches(boost.when, view):
                    final = final * boost.multiply + boost.add
                    fired.append(Fired(boost.name, "boost", _effect(boost.multiply, boost.add)))
            for bury in buries if pin is None else ():
                if _category_in_scope(bury.scope, view) and _buries(bury, cand, view):
                    fired.append(Fired(bury.name, "bury", "moved below unburied hits"))
                    buried.add(cand.id)
                    break
            if pin is not None:
                fired.append(Fired(pin.name, "pin", f"position {pin.position}"))
        else:
            fired.append(drop_reason)
        band = _band(bands, cand.model_score)
        ranked = Ranked(cand, norm, blended, final, band, tuple(fired))
        (dropped if drop_reason else kept).append(ranked)
    kept.sort(key=lambda r: (r.candidate.id in buried, -r.final, r.candidate.engine_rank))
    return Outcome(ranked=_place_pins(kept, pins), dropped=dropped)


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


def _buries(bury: Bury, cand: Candidate, view: Mapping[str, Any]) -> bool:
    return bool(bury.ids and cand.id in bury.ids) or (
        bury.when is not None and matches(bury.when, view)
    )


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


def in_scope(scope: Scope | None, view: Mapping[str, Any], query_text: str) -> bool:
    return _query_in_scope(scope, query_text) and _category_in_scope(scope, view)


def _query_in_scope(scope: Scope | None, query_text: str) -> bool:
    return (
        scope is None or not scope.query or any(query_matches(p, query_text) for p in scope.query)
    )


def _category_in_scope(scope: Scope | None, view: Mapping[str, Any]) -> bool:
    return scope is None or not scope.category or view.get(CATEGORY_FIELD) in scope.category


def matches(condition: Condition, view: Mapping[str, Any]) -> bool:
    if isinstance(condition, AllOf):
        return all(matches(c, view) for c in condition.all)
    if isinstance(condition, AnyOf):
        return any(matches(c, view) for c in condition.any)
    return _field_matches(condition, view.get(condition.field))


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


def _drop_reason(
    rules: RulesFile, when: Condition | None, cand: Candidate, view: Mapping[str, Any]
) -> Fired | None:
    threshold = rules.drop.below_model_score
    if threshold is not None and cand.model_score is not None and cand.model_score < threshold:
        return Fired(
            "drop.below_model_score", "drop", f"model_score {cand.model_score:.3f} < {threshold}"
        )
    if when is not None and _category_in_scope(rules.drop.scope, view) and matches(when, view):
        return Fired("drop.when", "drop", "condition matched")
    return None


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
