"""The rules file schema (version 1). Strict: an unknown key is an error, not a silent no-op.

    version: 1
    blend: {model_weight: 0.8, engine_weight: 0.2, engine_normalization: minmax}
    drop:
      below_model_score: 0.4
    boosts:
      - name: best-sellers
        when: {all: [{field: model_score, gte: 0.75}, {field: sales, gte: 1000}]}
        multiply: 1.2
    bands: [{name: strong, gte: 0.75}, {name: medium, gte: 0.55}, {name: weak, gte: 0.0}]

Conditions read `model_score`, `engine_score` (normalized), `blended_score`, or any business field
of the field map.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldCondition(_Strict):
    field: str
    eq: Scalar | None = None
    in_: list[Scalar] | None = Field(None, alias="in")
    gte: float | None = None
    lte: float | None = None
    exists: bool | None = None

    @model_validator(mode="after")
    def _one_test(self) -> FieldCondition:
        tests = [self.eq, self.in_, self.gte, self.lte, self.exists]
        if all(t is None for t in tests):
            raise ValueError("a condition needs one of eq, in, gte, lte, exists")
        return self


class AllOf(_Strict):
    all: list[Condition]


class AnyOf(_Strict):
    any: list[Condition]


Condition = FieldCondition | AllOf | AnyOf
AllOf.model_rebuild()
AnyOf.model_rebuild()


class Blend(_Strict):
    model_weight: float = Field(0.8, ge=0)
    engine_weight: float = Field(0.2, ge=0)
    engine_normalization: Literal["minmax", "none"] = "minmax"

    @model_validator(mode="after")
    def _some_weight(self) -> Blend:
        if self.model_weight + self.engine_weight <= 0:
            raise ValueError("model_weight + engine_weight must be above 0")
        return self


class Drop(_Strict):
    below_model_score: float | None = Field(0.4, ge=0, le=1)
    when: Condition | None = None  # also drop hits matching this condition


class Boost(_Strict):
    name: str
    when: Condition
    multiply: float = Field(1.0, gt=0)
    add: float = 0.0

    @model_validator(mode="after")
    def _has_effect(self) -> Boost:
        if self.multiply == 1.0 and self.add == 0.0:
            raise ValueError("a boost needs multiply (not 1) or add (not 0)")
        return self


class Band(_Strict):
    name: str
    gte: float = Field(ge=0, le=1)


DEFAULT_BANDS = (
    Band(name="strong", gte=0.75),
    Band(name="medium", gte=0.55),
    Band(name="weak", gte=0.0),
)


class RulesFile(_Strict):
    version: Literal[1]
    blend: Blend = Blend()
    drop: Drop = Drop()
    boosts: list[Boost] = []
    bands: list[Band] = list(DEFAULT_BANDS)

    @model_validator(mode="after")
    def _unique_names(self) -> RulesFile:
        names = [b.name for b in self.boosts]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"boost names must be unique: {', '.join(dupes)}")
        return self


def field_names(condition: Condition | None) -> set[str]:
    """Every field a condition reads (for checking them against the field map)."""
    if condition is None:
        return set()
    if isinstance(condition, FieldCondition):
        return {condition.field}
    parts: list[Any] = condition.all if isinstance(condition, AllOf) else condition.any
    return set().union(*(field_names(c) for c in parts)) if parts else set()
