"""The evaluation protocol (docs/evaluation.md): index the corpus, run each query through
the first stage, keep its judged candidates in the engine's order, rerank them through the real
pipeline (scorer, cache, rules), and score every ordering with the same metrics.

Orderings compared per query:
- engine: the first stage's order over the judged candidates it retrieves,
- reranked: what /search returns for them (model score blended by the live rules, drops applied),
- calibrated, tuned (when asked, as `Variant`s): /search again with the scores calibrated
  and/or another rules file (`eval --calibration`, `--rules`),
- model: the model's score alone over every judged candidate (what the reranker can do when the
  first stage misses nothing),
- random: a seeded shuffle.
Candidates the engine does not retrieve, and hits the rules drop, follow in a fixed order, as
they would be absent from a shopper's page.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sidecar.backends.base import Hit, TermFilter
from sidecar.config import FieldMap
from sidecar.deadline import Deadline
from sidecar.documents import Document, from_hit
from sidecar.evaluation.data import Dataset, JudgedQuery
from sidecar.evaluation.metrics import mrr_best, ndcg_at, recall_at
from sidecar.pipeline import Pipeline, SearchParams
from sidecar.rules import LoadedRules
from sidecar.scoring_service import ScoringService
from sidecar.services import Services

# Every order a report may hold, in the order it shows them; calibrated and tuned only when asked.
ORDERS = ("engine", "reranked", "calibrated", "tuned", "model", "random")
EVAL_FIELDS = FieldMap(
    id="id", title="title", selling_points="description", image_urls="image_url", business=[]
)
SEARCH_FIELDS = {"title": 3.0, "description": 1.5}
# Operator work: every pair scored, never a fallback.
ENGINE_TIMEOUT_S = 60.0
TIMEOUT_S = 600.0
# The rerank window whose recall is measured: judged-relevant products the first stage finds in
# its top WINDOW over the whole corpus (what the reranker can reorder at all).
WINDOW = 100


@dataclass
class QueryResult:
    query: JudgedQuery
    query_type: str
    metrics: dict[str, dict[str, float]]  # order -> metric -> value
    rankings: dict[str, list[str]] = field(default_factory=dict)
    # per judged product: (the scorer's raw score, the score as answered: calibrated if asked)
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)
    # judged-relevant products in the first stage's top WINDOW of the whole corpus (NaN: none)
    window_recall: float = float("nan")
    # judged products the first stage (restricted to the judged ones) did not retrieve: 0 means
    # the window held every judged product, where the reranker can reach the model alone
    missed: int = 0


@dataclass(frozen=True)
class Variant:
    """One more reranked order: /search through `pipeline` (e.g. one with a calibration) with
    `rules` (None: the live rules)."""

    name: str
    pipeline: Pipeline
    rules: LoadedRules | None = None


def orders_of(results: Sequence[QueryResult]) -> list[str]:
    present = set(results[0].metrics) if results else set()
    return [o for o in ORDERS if o in present]


def classify(text: str) -> str:
    """Built-in query types when the data has none: by length, which tracks how specific
    shoppers are ("tv" vs "55 inch 4k smart tv wall mount")."""
    words = len(text.split())
    return "1-2 words" if words <= 2 else "3-4 words" if words <= 4 else "5+ words"


def corpus_documents(dataset: Dataset) -> list[dict[str, Any]]:
    return [
        {"id": p.id, "title": p.title, "description": p.text} for p in dataset.products.values()
    ]


async def evaluate(
    dataset: Dataset,
    services: Services,
    index: str,
    progress: Callable[[QueryResult], None] | None = None,
    seed: int = 13,
    variants: Sequence[Variant] = (),
    scoring: ScoringService | None = None,
) -> list[QueryResult]:
    """Every order of every judged query. `scoring` (default: the services' scoring service)
    gives the model-alone order and the per-pair scores."""
    pipeline = services.pipeline
    if pipeline.field_map != EVAL_FIELDS:  # the corpus has its own fields (session.run_eval)
        raise ValueError("evaluate() needs services built with fields=EVAL_FIELDS")
    low, high = dataset.label_range
    threshold = (low + high) / 2
    corpus = {
        doc["id"]: from_hit(Hit(doc["id"], 0.0, doc), EVAL_FIELDS)
        for doc in corpus_documents(dataset)
    }
    results = []
    for judged in dataset.queries:
        rankings, scores, missed = await _rankings(
            judged,
            pipeline,
            services,
            index,
            corpus,
            random.Random(f"{seed}:{judged.id}"),
            variants,
            scoring or services.scoring,
        )
        metrics = {
            order: {
                "ndcg@10": ndcg_at(r, judged.labels),
                "mrr": mrr_best(r, judged.labels),
                "recall@10": recall_at(r, judged.labels, threshold),
            }
            for order, r in rankings.items()
        }
        result = QueryResult(
            judged,
            judged.query_type or classify(judged.text),
            metrics,
            rankings,
            scores,
            missed=missed,
        )
        result.window_recall = await _window_recall(judged, pipeline, services, index, threshold)
        results.append(result)
        if progress is not None:
            progress(result)
    return results


async def _window_recall(
    judged: JudgedQuery, pipeline: Pipeline, services: Services, index: str, threshold: float
) -> float:
    """The share of the query's judged-relevant products (label >= threshold) in the first
    stage's top WINDOW over the whole corpus, as configured (lexical or hybrid)."""
    relevant = {i for i, label in judged.labels.items() if label >= threshold}
    if not relevant:
        return float("nan")
    query = services.normalizer.query(judged.text)
    found = await pipeline.retriever.search(
        index, query.text, [], WINDOW, Deadline.after(ENGINE_TIMEOUT_S)
    )
    return len(relevant & {h.id for h in found.result.hits}) / len(relevant)


async def _rankings(
    judged: JudgedQuery,
    pipeline: Pipeline,
    services: Services,
    index: str,
    corpus: dict[str, Document],
    rng: random.Random,
    variants: Sequence[Variant],
    scoring: ScoringService,
) -> tuple[dict[str, list[str]], dict[str, tuple[float, float]], int]:
    ids = sorted(judged.labels)
    query = services.normalizer.query(judged.text)
    instruction = services.settings.scorer.instruction
    only_judged = [TermFilter("id", tuple(ids))]
    first = await pipeline.retriever.search(
        index, query.text, only_judged, len(ids), Deadline.after(ENGINE_TIMEOUT_S)
    )
    engine = [h.id for h in first.result.hits]
    missed = [i for i in ids if i not in set(engine)]

    params = SearchParams(
        index=index,
        query=query,
        filters=only_judged,
        size=len(ids),
        window=len(ids),
        instruction=instruction,
    )

    async def reranked(through: Pipeline, rules: LoadedRules | None) -> list[str]:
        outcome = await through.search(replace(params, rules=rules), Deadline.after(TIMEOUT_S))
        if outcome.report.status != "ok":
            raise RuntimeError(
                f"scoring did not complete for {judged.text!r}: {outcome.report.reason}"
            )
        shown = [h.document.id for h in outcome.hits]
        dropped = [i for i in engine if i not in set(shown)]
        return shown + dropped + missed

    orders = {"engine": engine + missed, "reranked": await reranked(pipeline, None)}
    for variant in variants:
        orders[variant.name] = await reranked(variant.pipeline, variant.rules)
    report = await scoring.score(
        query, [corpus[i] for i in ids], instruction, Deadline.after(TIMEOUT_S)
    )
    scores = dict(zip(ids, report.scores, strict=True))
    raw = dict(zip(ids, report.raw_scores, strict=True))
    shuffled = list(ids)
    rng.shuffle(shuffled)
    orders["model"] = sorted(ids, key=lambda i: -(scores[i] or 0.0))
    orders["random"] = shuffled
    pairs = {i: (float(raw[i] or 0.0), float(scores[i] or 0.0)) for i in ids}
    return orders, pairs, len(missed)
