"""Every judged pair scored through the real pipeline (scorer and cache), with the first
stage's hits where asked: what `calibrate` and `rules tune` fit on. Same documents, same
instruction and so the same pair keys as `eval` (sidecar.evaluation.runner)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.backends.base import Hit, TermFilter
from sidecar.deadline import Deadline
from sidecar.documents import Document, from_hit
from sidecar.evaluation.data import Dataset, JudgedQuery
from sidecar.evaluation.runner import EVAL_FIELDS, corpus_documents
from sidecar.services import Services

TIMEOUT_S = 600.0  # operator work: every pair scored, never a fallback


@dataclass
class ScoredQuery:
    query: JudgedQuery
    text: str  # the normalized query text the rules see
    ids: list[str]  # the judged products, sorted
    raw: dict[str, float]  # the scorer's own scores
    scores: dict[str, float]  # as the pipeline answers (calibrated when it has a calibration)
    engine: list[Hit] = field(default_factory=list)  # first-stage hits among the judged ones
    missed: list[str] = field(default_factory=list)  # judged products the engine did not find
    fields: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # business fields

    @property
    def labels(self) -> dict[str, float]:
        return self.query.labels


async def score_judged(
    dataset: Dataset,
    services: Services,
    index: str | None = None,
    progress: Callable[[ScoredQuery], None] | None = None,
) -> list[ScoredQuery]:
    """Score every judged pair of `dataset`; with `index` (the corpus indexed there) also run
    each query's first stage over its judged products, as `eval` does."""
    corpus: dict[str, Document] = {
        doc["id"]: from_hit(Hit(doc["id"], 0.0, doc), EVAL_FIELDS)
        for doc in corpus_documents(dataset)
    }
    instruction = services.settings.scorer.instruction
    out = []
    for judged in dataset.queries:
        ids = sorted(judged.labels)
        query = services.normalizer.query(judged.text)
        report = await services.scoring.score(
            query, [corpus[i] for i in ids], instruction, Deadline.after(TIMEOUT_S)
        )
        if report.status != "ok":
            raise RuntimeError(f"scoring did not complete for {judged.text!r}: {report.reason}")
        scored = ScoredQuery(
            query=judged,
            text=query.text,
            ids=ids,
            raw={i: float(s or 0.0) for i, s in zip(ids, report.raw_scores, strict=True)},
            scores={i: float(s or 0.0) for i, s in zip(ids, report.scores, strict=True)},
            fields={i: corpus[i].fields for i in ids},
        )
        if index is not None:
            only_judged = [TermFilter("id", tuple(ids))]
            # the configured first stage (lexical or hybrid), as eval runs it
            found_by = await services.pipeline.retriever.search(
                index, query.text, only_judged, len(ids), Deadline.after(TIMEOUT_S)
            )
            first = found_by.result
            scored.engine = list(first.hits)
            found = {h.id for h in first.hits}
            scored.missed = [i for i in ids if i not in found]
        out.append(scored)
        if progress is not None:
            progress(scored)
    return out
