"""The rules file schema (version 1). Strict: an unknown key is an error, not a silent no-op.

    version: 1
    blend: {model_weight: 0.8, engine_weight: 0.2, engine_normalization: minmax}
    drop:
      below_model_score: 0.4
      when: {field: in_stock, eq: false}
      min_results: 3          # the best of the dropped are kept to fill a page up to this
    boosts:
      - name: best-sellers
        when: {all: [{field: model_score, gte: 0.75}, {field: sales, gte: 1000}]}
        multiply: 1.2
        scope: {category: [Footwear], query: {glob: "*boots*"}}
    pins:
      - {name: hero-boot, query: {is: hiking boots}, id: P001, position: 1}
    buries:
      - {name: refurbished-last, when: {field: condition, eq: refurbished}}
    bands: [{name: strong, gte: 0.75}, {name: medium, gte: 0.55}, {name: weak, gte: 0.0}]
    variants:
      - {name: strong-boost, share: 0.1, boosts: [...]}   # replaces the sections it names

Conditions read `model_score`, `engine_score` (normalized), `blended_score`, or any business field
of the field map. Query patterns match the normalized query text, case-insensitively.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

Scalar = str | int | float | bool

CATEGORY_FIELD = "category"  # the business field a `scope.category` reads
SECTIONS = ("blend", "drop", "boosts", "pins", "buries", "bands")  # what a variant may replace


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


def _condition_kind(value: Any) -> str:
    """Pick the condition's type by its key, so that errors speak of that type alone (a plain
    union would also report why the value is not an `all` and not an `any`)."""
    if isinstance(value, dict):
        keys = set(value)
    elif isinstance(value, BaseModel):
        keys = set(type(value).model_fields)
    else:
        return "FieldCondition"  # not a mapping: that member's error says so
    if "all" in keys:
        return "AllOf"
    return "AnyOf" if "any" in keys else "FieldCondition"


# Tags are type names: the loader leaves capitalized parts out of an error's path.
Condition = Annotated[
    Annotated[FieldCondition, Tag("FieldCondition")]
    | Annotated[AllOf, Tag("AllOf")]
    | Annotated[AnyOf, Tag("AnyOf")],
    Discriminator(_condition_kind),
]
AllOf.model_rebuild()
AnyOf.model_rebuild()


class QueryPattern(_Strict):
    """Which queries a rule is for: exactly one of `is` (the whole query), `glob` or `regex`
    (searched anywhere). All compare the normalized query text, ignoring case."""

    is_: str | None = Field(None, alias="is")
    glob: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> QueryPattern:
        given = [v for v in (self.is_, self.glob, self.regex) if v is not None]
        if len(given) != 1:
            raise ValueError("a query pattern needs exactly one of is, glob, regex")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from exc
        return self

    def compiled(self) -> re.Pattern[str]:
        if self.regex is not None:
            return re.compile(self.regex, re.IGNORECASE)
        if self.glob is not None:
            return re.compile(fnmatch.translate(self.glob.casefold()), re.IGNORECASE)
        return re.compile(re.escape(" ".join((self.is_ or "").split())) + r"\Z", re.IGNORECASE)


class Scope(_Strict):
    """Where a rule applies: hits of these categories and/or queries matching these patterns."""

    category: list[str] | None = None
    query: list[QueryPattern] | None = None

    @field_validator("category", "query", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if value is not None and not isinstance(value, list) else value

    @model_validator(mode="after")
    def _something(self) -> Scope:
        if not self.category and not self.query:
            raise ValueError("a scope needs category or query")
        return self


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
    scope: Scope | None = None  # `when` applies only within this scope
    # A page emptied by a threshold tells the shopper nothing: the best of the dropped (by final
    # score) are kept, flagged, until this many hits remain (or every hit the engine found).
    # The bundled rules say 3; a file that does not say keeps its old meaning, 0: drop whatever
    # the rules say.
    min_results: int = Field(0, ge=0, le=1000)


class Boost(_Strict):
    name: str = Field(min_length=1)
    when: Condition
    multiply: float = Field(1.0, gt=0)
    add: float = 0.0
    scope: Scope | None = None

    @model_validator(mode="after")
    def _has_effect(self) -> Boost:
        if self.multiply == 1.0 and self.add == 0.0:
            raise ValueError("a boost needs multiply (not 1) or add (not 0)")
        return self


class Pin(_Strict):
    """Put product `id` at `position` (1-based) for matching queries, whatever its score.
    A pinned hit is never dropped; a pin only moves hits that are in the rerank window."""

    name: str = Field(min_length=1)
    query: QueryPattern
    id: str = Field(min_length=1)
    position: int = Field(ge=1)


class Bury(_Strict):
    """Move matching hits below every other hit (they keep their order among themselves)."""

    name: str = Field(min_length=1)
    when: Condition | None = None
    ids: list[str] | None = None
    scope: Scope | None = None

    @model_validator(mode="after")
    def _selects(self) -> Bury:
        if self.when is None and not self.ids:
            raise ValueError("a bury needs when or ids")
        return self


class Band(_Strict):
    name: str
    gte: float = Field(ge=0, le=1)


DEFAULT_BANDS = (
    Band(name="strong", gte=0.75),
    Band(name="medium", gte=0.55),
    Band(name="weak", gte=0.0),
)


class _Sections(_Strict):
    """The sections a rule set has; a variant gives any of them to replace the base's."""

    blend: Blend = Blend()
    drop: Drop = Drop()
    boosts: list[Boost] = []
    pins: list[Pin] = []
    buries: list[Bury] = []
    bands: list[Band] = list(DEFAULT_BANDS)

    @model_validator(mode="after")
    def _unique_names(self) -> _Sections:
        rules: list[Boost | Pin | Bury] = [*self.boosts, *self.pins, *self.buries]
        names = [r.name for r in rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique: {', '.join(dupes)}")
        positions: dict[tuple[QueryPattern, int], str] = {}
        for pin in self.pins:
            key = (pin.query, pin.position)
            if key in positions:
                raise ValueError(
                    f"pins {positions[key]} and {pin.name} take the same position for one query"
                )
            positions[key] = pin.name
        return self


class Variant(_Sections):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    share: float = Field(0.0, ge=0, le=1)  # traffic share for stable-hash assignment


class RulesFile(_Sections):
    version: Literal[1]
    variants: list[Variant] = []

    @model_validator(mode="after")
    def _variants_fit(self) -> RulesFile:
        names = [v.name for v in self.variants]
        if "default" in names:
            raise ValueError("'default' names the base rules; give the variant another name")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"variant names must be unique: {', '.join(dupes)}")
        if sum(v.share for v in self.variants) > 1.0 + 1e-9:
            raise ValueError("variant shares add up to more than 1")
        return self

    def variant(self, name: str) -> RulesFile:
        """The rules of variant `name`: the base with the sections the variant gives replaced."""
        chosen = next(v for v in self.variants if v.name == name)
        replaced = {s: getattr(chosen, s) for s in SECTIONS if s in chosen.model_fields_set}
        return self.model_copy(update={**replaced, "variants": []})


def field_names(condition: Condition | None) -> set[str]:
    """Every field a condition reads (for checking them against the field map)."""
    if condition is None:
        return set()
    if isinstance(condition, FieldCondition):
        return {condition.field}
    parts: list[Any] = condition.all if isinstance(condition, AllOf) else condition.any
    return set().union(*(field_names(c) for c in parts)) if parts else set()


def fields_read(rules: RulesFile) -> dict[tuple[str | int, ...], set[str]]:
    """Business fields read by each rule, keyed by the rule's path in the file (variants too)."""
    out: dict[tuple[str | int, ...], set[str]] = {}
    sets: list[tuple[tuple[str | int, ...], _Sections]] = [((), rules)]
    sets += [(("variants", i), v) for i, v in enumerate(rules.variants)]
    for prefix, part in sets:
        out[(*prefix, "drop")] = field_names(part.drop.when) | _scope_fields(part.drop.scope)
        for i, boost in enumerate(part.boosts):
            out[(*prefix, "boosts", i)] = field_names(boost.when) | _scope_fields(boost.scope)
        for i, bury in enumerate(part.buries):
            out[(*prefix, "buries", i)] = field_names(bury.when) | _scope_fields(bury.scope)
    return {path: names for path, names in out.items() if names}


def _scope_fields(scope: Scope | None) -> set[str]:
    return {CATEGORY_FIELD} if scope is not None and scope.category else set()


PROBABILITY_FIELDS = ("model_score", "blended_score")  # what a calibration makes P(relevant)


def probability_thresholds(rules: RulesFile) -> list[str]:
    """The thresholds of `rules` that read a model score as a probability (the drop threshold,
    the bands, gte/lte on model_score or blended_score), each named by where it is: what a raw,
    uncalibrated score makes mean something else. A variant's are those of the sections it
    replaces."""
    out = [t for section in SECTIONS for t in _section_thresholds(rules, section)]
    for v in rules.variants:
        given = [s for s in SECTIONS if s in v.model_fields_set]
        out += [f"variants.{v.name}.{t}" for s in given for t in _section_thresholds(v, s)]
    return out


def _section_thresholds(part: _Sections, section: str) -> list[str]:
    if section == "drop":
        below = part.drop.below_model_score
        tests = [f"drop.below_model_score {below:g}"] if below is not None else []
        return tests + _score_tests(part.drop.when, "drop.when")
    if section == "boosts":
        return [t for b in part.boosts for t in _score_tests(b.when, f"boosts.{b.name}")]
    if section == "buries":
        return [t for b in part.buries for t in _score_tests(b.when, f"buries.{b.name}")]
    if section == "bands":
        return [f"bands.{b.name} >= {b.gte:g}" for b in part.bands if b.gte > 0]
    return []


def _score_tests(condition: Condition | None, where: str) -> list[str]:
    if condition is None:
        return []
    if isinstance(condition, FieldCondition):
        if condition.field not in PROBABILITY_FIELDS:
            return []
        tests = [(">=", condition.gte), ("<=", condition.lte)]
        return [f"{where}: {condition.field} {op} {v:g}" for op, v in tests if v is not None]
    parts: list[Any] = condition.all if isinstance(condition, AllOf) else condition.any
    return [t for c in parts for t in _score_tests(c, where)]
