"""The rules engine: a pure function of (scored hits, rules). No I/O, no clock, no randomness.

Order of work for each hit: normalize the engine score over the window, blend it with the model
score, drop, boost, band. A hit without a model score (scoring timed out or failed) takes its
normalized engine score in the model's place, so it keeps its engine rank relative to its peers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sidecar.rules.schema import AllOf, AnyOf, Condition, FieldCondition, RulesFile


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
    kind: str  # drop | boost
    effect: str  # e.g. "x1.2", "+0.05", "model_score 0.31 < 0.4"


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


def apply(rules: RulesFile, candidates: Sequence[Candidate]) -> Outcome:
    norms = _normalize([c.engine_score for c in candidates], rules.blend.engine_normalization)
    weights = rules.blend
    total = weights.model_weight + weights.engine_weight
    kept: list[Ranked] = []
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
        drop_reason = _drop_reason(rules, cand, view)
        final = blended
        if drop_reason is None:
            for boost in rules.boosts:
                if matches(boost.when, view):
                    final = final * boost.multiply + boost.add
                    fired.append(Fired(boost.name, "boost", _effect(boost.multiply, boost.add)))
        else:
            fired.append(drop_reason)
        ranked = Ranked(cand, norm, blended, final, band_of(rules, cand.model_score), tuple(fired))
        (dropped if drop_reason else kept).append(ranked)
    kept.sort(key=lambda r: (-r.final, r.candidate.engine_rank))
    return Outcome(ranked=kept, dropped=dropped)


def band_of(rules: RulesFile, score: float | None) -> str:
    if score is None:
        return "unscored"
    for band in sorted(rules.bands, key=lambda b: -b.gte):
        if score >= band.gte:
            return band.name
    return "none"


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


def _drop_reason(rules: RulesFile, cand: Candidate, view: Mapping[str, Any]) -> Fired | None:
    threshold = rules.drop.below_model_score
    if threshold is not None and cand.model_score is not None and cand.model_score < threshold:
        return Fired(
            "drop.below_model_score", "drop", f"model_score {cand.model_score:.3f} < {threshold}"
        )
    if rules.drop.when is not None and matches(rules.drop.when, view):
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
