"""`rules tune`: the blend (model and engine weights, engine normalization) and the drop
threshold that rank a shop's judged queries best by NDCG@10, chosen with query-disjoint k-fold
cross-validation and reported against the current rules file and the model alone.

Offline over pairs scored once (sidecar.evaluation.judged): a candidate is the current file
with its `blend` and `drop.below_model_score` replaced, applied by the rules' ranking to the
engine's hits as Pipeline.search applies it, and ordered as `eval`'s reranked order (kept hits,
then dropped ones in engine order, then judged products the engine did not find). Boosts, pins,
buries, bands and variants stay as the file has them.
"""

from __future__ import annotations

import difflib
import io
import itertools
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sidecar.evaluation.judged import ScoredQuery
from sidecar.evaluation.metrics import bootstrap_ci, ndcg_at, paired_permutation_p
from sidecar.rules import Candidate, RulesFile, apply, parse_rules
from sidecar.rules.schema import Blend, Drop

WEIGHTS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.5)  # model's share; the engine the rest
NORMALIZATIONS = ("minmax", "none")  # sidecar.rules.schema.Blend.engine_normalization
DROPS: tuple[float | None, ...] = (None, 0.1, 0.2, 0.3, 0.4, 0.5)
HEADER = "# Suggested by `rerank-sidecar rules tune`"


@dataclass(frozen=True)
class Setting:
    """What tuning changes in a rules file."""

    model_weight: float
    engine_weight: float
    normalization: str
    drop: float | None

    @classmethod
    def of(cls, rules: RulesFile) -> Setting:
        blend = rules.blend
        return cls(
            blend.model_weight,
            blend.engine_weight,
            blend.engine_normalization,
            rules.drop.below_model_score,
        )

    @property
    def key(self) -> tuple[float, str, float | None]:
        """Settings that rank identically (only the weights' ratio counts; without engine
        weight its normalization does not matter) share a key."""
        share = round(self.model_weight / (self.model_weight + self.engine_weight), 6)
        return (share, self.normalization if share < 1 else "-", self.drop)

    def label(self) -> str:
        drop = "no drop" if self.drop is None else f"drop < {self.drop:g}"
        engine = f" + engine {self.engine_weight:g} ({self.normalization})"
        return f"model {self.model_weight:g}{engine if self.engine_weight else ''}, {drop}"

    def applied_to(self, rules: RulesFile) -> RulesFile:
        blend = Blend.model_validate(
            {
                "model_weight": self.model_weight,
                "engine_weight": self.engine_weight,
                "engine_normalization": self.normalization,
            }
        )
        drop = rules.drop.model_copy(update={"below_model_score": self.drop})
        return rules.model_copy(update={"blend": blend, "drop": drop})

    def to_json(self) -> dict[str, Any]:
        return {
            "model_weight": self.model_weight,
            "engine_weight": self.engine_weight,
            "engine_normalization": self.normalization,
            "drop_below_model_score": self.drop,
        }


def grid(
    current: Setting,
    weights: Sequence[float] = WEIGHTS,
    normalizations: Sequence[str] = NORMALIZATIONS,
    drops: Sequence[float | None] = DROPS,
) -> list[Setting]:
    """The current setting first, then the grid nearest it first (so that of two candidates
    that rank every query alike, the one closer to the current file wins)."""
    out = {current.key: current}
    for w in weights:
        for norm in normalizations:
            for drop in (*drops, current.drop):
                s = Setting(round(w, 4), round(1 - w, 4), norm, drop)
                out.setdefault(s.key, s)

    def distance(s: Setting) -> float:
        return (
            abs(s.key[0] - current.key[0])
            + 0.5 * (s.key[1] != current.key[1])
            + abs((s.drop or 0.0) - (current.drop or 0.0))
            + 0.01 * ((s.drop is None) != (current.drop is None))
        )

    rest = sorted((s for k, s in out.items() if k != current.key), key=distance)
    return [current, *rest]


def reranked_order(rules: RulesFile, query: ScoredQuery, scores: Mapping[str, float]) -> list[str]:
    """`eval`'s reranked order of one query under `rules`, from its engine hits and scores."""
    candidates = [
        Candidate(
            id=hit.id,
            engine_rank=i,
            engine_score=hit.score,
            model_score=scores[hit.id],
            fields=query.fields.get(hit.id, {}),
        )
        for i, hit in enumerate(query.engine)
    ]
    shown = [r.candidate.id for r in apply(rules, candidates, query.text).ranked]
    kept = set(shown)
    return shown + [h.id for h in query.engine if h.id not in kept] + query.missed


def model_order(query: ScoredQuery, scores: Mapping[str, float]) -> list[str]:
    return sorted(query.ids, key=lambda i: -scores[i])


@dataclass
class Row:
    name: str
    values: np.ndarray  # NDCG@10 per query
    setting: Setting | None = None
    folds: list[float] = field(default_factory=list)  # mean per held-out fold

    @property
    def mean(self) -> float:
        return float(self.values.mean()) if self.values.size else float("nan")

    def versus(self, other: Row) -> dict[str, Any]:
        diff = self.values - other.values
        low, high = bootstrap_ci(diff.tolist())
        return {
            "mean": float(diff.mean()),
            "ci95": [low, high],
            "p_value": paired_permutation_p(other.values.tolist(), self.values.tolist()),
        }

    def to_json(self, current: Row, model: Row) -> dict[str, Any]:
        low, high = bootstrap_ci(self.values.tolist())
        return {
            "name": self.name,
            **({"setting": self.setting.to_json()} if self.setting else {}),
            "ndcg@10": {"mean": self.mean, "ci95": [low, high]},
            "fold_means": self.folds,
            "vs_current": self.versus(current),
            "vs_model": self.versus(model),
        }


@dataclass
class TuneResult:
    queries: int
    folds: int
    seed: int
    calibrated: bool
    candidates: list[Row]  # by mean NDCG@10, best first
    current: Row
    model: Row
    cross_validated: Row  # each fold ranked by the candidate the other folds chose
    chosen: list[Setting]  # per fold
    best: Setting  # the best candidate on every query: the suggestion
    current_raw: Row | None = None  # the current file on raw scores, when tuned on calibrated

    def to_json(self) -> dict[str, Any]:
        fixed = [self.current, self.model, *([self.current_raw] if self.current_raw else [])]
        return {
            "queries": self.queries,
            "folds": self.folds,
            "seed": self.seed,
            "scores": "calibrated" if self.calibrated else "raw",
            "suggested": self.best.to_json(),
            "cross_validated": {
                **self.cross_validated.to_json(self.current, self.model),
                "chosen_per_fold": [s.to_json() for s in self.chosen],
            },
            "fixed": [r.to_json(self.current, self.model) for r in fixed],
            "candidates": [r.to_json(self.current, self.model) for r in self.candidates],
        }


def fold_assignment(n: int, k: int, seed: int) -> np.ndarray:
    """Query i's fold: a seeded shuffle dealt into k folds (a query is never split)."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    folds = np.empty(n, dtype=int)
    for position, i in enumerate(order):
        folds[i] = position % k
    return folds


def tune(
    queries: Sequence[ScoredQuery],
    rules: RulesFile,
    candidates: Sequence[Setting] | None = None,
    folds: int = 5,
    seed: int = 0,
    calibrated: bool = False,
    progress: Callable[[int], None] | None = None,
) -> TuneResult:
    """Every candidate scored on every query; the cross-validated choice and the suggestion.
    `progress` is called with the number of candidates done."""
    if len(queries) < 2:
        raise ValueError(f"tuning needs at least 2 judged queries, not {len(queries)}")
    current = Setting.of(rules)
    settings = list(candidates) if candidates is not None else grid(current)
    if not settings or settings[0].key != current.key:
        settings = [current, *(s for s in settings if s.key != current.key)]
    rows_done = []
    for s in settings:
        applied = s.applied_to(rules)
        rows_done.append([ndcg_at(reranked_order(applied, q, q.scores), q.labels) for q in queries])
        if progress is not None:
            progress(len(rows_done))
    matrix = np.array(rows_done)
    k = max(2, min(folds, len(queries)))
    fold = fold_assignment(len(queries), k, seed)
    rows = [
        Row(s.label(), matrix[i], s, [float(matrix[i, fold == f].mean()) for f in range(k)])
        for i, s in enumerate(settings)
    ]
    tuned = np.empty(len(queries))
    chosen: list[Setting] = []
    for f in range(k):
        train, test = fold != f, fold == f
        best = int(np.argmax(matrix[:, train].mean(axis=1)))  # first of equals: nearest current
        chosen.append(settings[best])
        tuned[test] = matrix[best, test]
    model = Row(
        "model alone",
        np.array([ndcg_at(model_order(q, q.scores), q.labels) for q in queries]),
    )
    current_raw = None
    if calibrated:
        current_raw = Row(
            "current file, raw scores",
            np.array([ndcg_at(reranked_order(rules, q, q.raw), q.labels) for q in queries]),
            current,
        )
    cv = Row(
        f"tuned ({k}-fold cross-validated)",
        tuned,
        folds=[float(tuned[fold == f].mean()) for f in range(k)],
    )
    best_all = settings[int(np.argmax(matrix.mean(axis=1)))]
    return TuneResult(
        queries=len(queries),
        folds=k,
        seed=seed,
        calibrated=calibrated,
        candidates=sorted(rows, key=lambda r: -r.mean),
        current=Row("current file", matrix[0], current, rows[0].folds),
        model=model,
        cross_validated=cv,
        chosen=chosen,
        best=best_all,
        current_raw=current_raw,
    )


def table(result: TuneResult, top: int = 12) -> str:
    """The terminal report: fixed rows, the cross-validated choice, the best candidates."""
    cur, model = result.current, result.model

    def line(row: Row) -> str:
        low, high = bootstrap_ci(row.values.tolist())
        vc, vm = row.versus(cur), row.versus(model)
        return (
            f"{row.name[:52]:52s} {row.mean:6.3f} [{low:.3f}, {high:.3f}]"
            f" {vc['mean']:+7.3f} [{vc['ci95'][0]:+.3f}, {vc['ci95'][1]:+.3f}]"
            f" {vm['mean']:+7.3f} [{vm['ci95'][0]:+.3f}, {vm['ci95'][1]:+.3f}]"
        )

    head = (
        f"{'NDCG@10 (' + str(result.queries) + ' queries)':52s} {'mean':>6s} {'95% CI':>14s}"
        f" {'vs current file':>25s} {'vs model alone':>25s}"
    )
    lines = [head, "-- fixed"]
    lines += [line(r) for r in (cur, model, *([result.current_raw] if result.current_raw else []))]
    lines += [
        f"-- the tuning procedure, {result.folds}-fold cross-validated by query",
        line(result.cross_validated),
    ]
    picks = ", ".join(sorted({s.label() for s in result.chosen}))
    lines.append(f"   chosen per fold: {picks}")
    lines.append(
        f"-- candidates ({len(result.candidates)}), best {min(top, len(result.candidates))}"
    )
    lines += [line(r) for r in result.candidates[:top]]
    return "\n".join(lines)


def suggested_text(original: str, setting: Setting, header: Sequence[str] = ()) -> str:
    """`original` (a rules file's text) with the blend and drop threshold of `setting`; its
    comments, layout and every other section kept. A changed value's line comment says what it
    was. Raises RulesError if the result does not validate (it always should)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    mapping, sequence, offset = _indents(original)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    yaml.representer.add_representer(
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    body = "".join(
        line for line in original.splitlines(keepends=True) if not line.startswith(HEADER)
    )
    tree = yaml.load(body)
    wanted: dict[str, dict[str, Any]] = {
        "blend": {
            "model_weight": setting.model_weight,
            "engine_weight": setting.engine_weight,
            "engine_normalization": setting.normalization,
        },
        "drop": {"below_model_score": setting.drop},
    }
    defaults = {"blend": Blend().model_dump(), "drop": Drop().model_dump()}
    after = "version"
    for section, values in wanted.items():
        node = tree.get(section)
        if node is None:  # a file without the section: add it after the one before it
            node = CommentedMap()
            tree.insert(list(tree).index(after) + 1 if after in tree else 0, section, node)
        after = section
        for key, value in values.items():
            before = node.get(key, defaults[section][key])
            if key in node and before == value:
                continue
            node[key] = value
            if before != value:
                node.yaml_add_eol_comment(f"tuned: was {_yaml_value(before)}", key)
    out = io.StringIO()
    yaml.dump(tree, out)
    text = "".join(f"{line}\n" for line in header) + out.getvalue()
    parse_rules(text, "<suggested rules>")  # validates, or RulesError
    return text


def diff(original: str, suggested: str, old_name: str, new_name: str) -> str:
    return "".join(
        difflib.unified_diff(
            original.splitlines(keepends=True),
            suggested.splitlines(keepends=True),
            fromfile=old_name,
            tofile=new_name,
        )
    )


def variant_overrides(rules: RulesFile) -> list[str]:
    """Variants that replace the blend or the drop: tuning the base does not reach them."""
    return [v.name for v in rules.variants if {"blend", "drop"} & set(v.model_fields_set)]


def _yaml_value(value: Any) -> str:
    return "null" if value is None else str(value)


def _indents(text: str) -> tuple[int, int, int]:
    """(mapping, sequence, offset) indentation of a YAML text, so a rewrite keeps its look."""
    from ruamel.yaml.util import load_yaml_guess_indent

    mapping = 2
    lines = text.splitlines()
    for prev, line in itertools.pairwise(lines):
        found = re.match(r"^( +)[^\s#-]", line)
        if found and re.match(r"^[^\s#-][^#]*:\s*(#.*)?$", prev):
            mapping = len(found.group(1))
            break
    try:
        _, sequence, offset = load_yaml_guess_indent(text)
    except Exception:  # the file was validated already; a guess that fails keeps defaults
        sequence, offset = None, None
    sequence = sequence or mapping
    return mapping, sequence, offset if offset is not None else max(sequence - 2, 0)
