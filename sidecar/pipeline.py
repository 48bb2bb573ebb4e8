"""The request flow, top to bottom:

    query -> backend.search -> documents -> scoring.score -> rules.apply -> page

`Pipeline.search` is /search and the drop-in's `_search`; `Pipeline.rerank` is the rerank routes'
(no engine order to fall back on). Scoring itself, with its cache, single flight, images and
calibration, is the cached-scoring service's (sidecar.scoring_service); this module holds the
flow and what it refuses.

A request carries one Deadline (sidecar.deadline), made by its route when it arrives and handed
to every stage: the engine gets its share of what is left, the images, the cache and the model
the rest, and `timings` says what each stage was given (`*_budget_ms`). When scoring cannot
finish in time (or fails) the answer uses cached scores where it has them and the engine's
order elsewhere, and says so: `rerank_status` is `partial` or `fallback` with a reason.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sidecar import documents as docs_mod
from sidecar.backends.base import Filter, Hit, SearchBackend
from sidecar.config import FieldMap, HybridSettings
from sidecar.deadline import Deadline
from sidecar.documents import Document, DocumentMemo
from sidecar.errors import EngineTimeout, InvalidRequest, ModelNotReady, Overloaded, ScoringFailed
from sidecar.product_types import QueryType, TypeMatcher
from sidecar.query import Query
from sidecar.retrieval import LEXICAL, Retrieval, Retriever
from sidecar.rules import Candidate, LoadedRules, Ranked, apply
from sidecar.scoring.base import languages_of
from sidecar.scoring_service import ScoreReport, ScoringService, decoded
from sidecar.writing_systems import unreadable_script

if TYPE_CHECKING:
    from sidecar.rules.store import RuleStore


@dataclass(frozen=True)
class SearchParams:
    """What to search; how long for is the request's Deadline, handed in beside it."""

    index: str
    query: Query
    filters: Sequence[Filter] = ()
    offset: int = 0
    size: int = 10
    window: int = 100
    instruction: str = ""
    raw_query: Mapping[str, Any] | None = None
    rules: LoadedRules | None = None  # None: the live default rules
    retrieval: Retrieval | None = None  # None: hybrid.enabled decides


@dataclass(frozen=True)
class PageHit:
    hit: Hit
    document: Document
    ranked: Ranked | None  # None: beyond the rerank window, engine order
    flags: tuple[str, ...] = ()


@dataclass
class SearchOutcome:
    hits: list[PageHit]
    total: int
    window: int
    dropped: int  # dropped by the rules and not shown
    report: ScoreReport
    rules_version: str
    timings: dict[str, float]
    engine: str
    raw: Mapping[str, Any] = field(default_factory=dict)  # the engine's extras (aggregations...)
    retrieval: Retrieval = "lexical"  # the first stage that ran
    retrieval_reason: str = ""  # why lexical, where hybrid was asked for
    kept_despite_drop: int = 0  # dropped by a rule, shown to fill drop.min_results
    query_type: QueryType | None = None  # the product type the query names


class Pipeline:
    def __init__(
        self,
        backend: SearchBackend,
        scoring: ScoringService,
        rules: RuleStore,
        field_map: FieldMap,
        *,
        engine_share: float = 0.6,
        strict_languages: bool = False,
        documents: DocumentMemo | None = None,
        retriever: Retriever | None = None,
        types: TypeMatcher | None = None,
    ) -> None:
        self.backend = backend
        # the first stage: lexical, or lexical and vector legs fused (sidecar.retrieval)
        self.retriever = retriever or Retriever(backend, scoring.scorer, HybridSettings())
        self.scoring = scoring
        self.rules = rules  # `.current` is the live LoadedRules
        self.field_map = field_map
        self.engine_share = engine_share
        # the rerank APIs refuse what the scorer cannot read
        self.strict_languages = strict_languages
        # the documents of hits seen lately: a warm product is read from its `_source` once
        self.documents = documents if documents is not None else DocumentMemo()
        # recognises the product type a query names (None: no query names one)
        self.types = types

    def scored_by(self, scoring: ScoringService) -> Pipeline:
        """This flow (engine, rules, documents) over another scoring service: evaluation
        compares raw and calibrated answers on one model."""
        other = copy.copy(self)
        other.scoring = scoring
        return other

    async def search(self, p: SearchParams, deadline: Deadline) -> SearchOutcome:
        started = time.perf_counter()
        rules = p.rules or self.rules.current
        self._check_modalities(p.query)
        query = await decoded(p.query)
        fetch = max(p.window, p.offset + p.size)  # beyond the window the engine order continues
        engine = deadline.share(self.engine_share)
        try:
            # the backend keeps `engine` itself; the wait outlasts it so its own error comes first
            retrieved = await asyncio.wait_for(
                self.retriever.search(
                    p.index, query.text or None, p.filters, fetch, engine, p.raw_query, p.retrieval
                ),
                timeout=engine.outwait_s(),
            )
        except TimeoutError as exc:
            raise EngineTimeout(
                f"{self.backend.name} did not answer within {engine.budget * 1000:.0f} ms",
                engine=self.backend.name,
            ) from exc
        t_engine = time.perf_counter()
        result = retrieved.result
        window_hits, tail_hits = result.hits[: p.window], result.hits[p.window :]
        documents = self.documents.of(window_hits, self.field_map)
        t_docs = time.perf_counter()

        unread = self.unreadable(query)
        if unread is None:
            report = await self.scoring.score(query, documents, p.instruction, deadline)
        else:  # a confident order from a model that cannot read the query is worse than none
            report = ScoreReport(scores=[None] * len(documents))
            report.degrade(unread)
        t_scored = time.perf_counter()

        candidates = [
            Candidate(
                id=doc.id,
                engine_rank=i,
                engine_score=hit.score,
                model_score=report.scores[i],
                fields=doc.fields,
                product_type=doc.product_type,
                matched=not hit.legs or LEXICAL in hit.legs,
            )
            for i, (hit, doc) in enumerate(zip(window_hits, documents, strict=True))
        ]
        query_type = self.types.recognise(query.text) if self.types and query.text else None
        outcome = apply(rules.rules, candidates, query.text, query_type)
        # The page: the ranked window, then the engine's order beyond it. Only the page's hits
        # are made (the rest of the window is counted, not shown). engine_rank is the hit's
        # position in the window: ids need not be unique there.
        end = p.offset + p.size
        page = [
            PageHit(
                window_hits[r.candidate.engine_rank],
                documents[r.candidate.engine_rank],
                r,
                tuple(report.flags.get(r.candidate.engine_rank, ())),
            )
            for r in outcome.ranked[p.offset : end]
        ]
        ranked = len(outcome.ranked)
        page += [
            PageHit(hit, docs_mod.from_hit(hit, self.field_map), None)
            for hit in tail_hits[max(p.offset - ranked, 0) : max(end - ranked, 0)]
        ]
        t_rules = time.perf_counter()

        timings = {
            "engine_budget_ms": engine.budget_ms,
            "engine_ms": _ms(started, t_engine),
            **retrieved.timings,
            "documents_ms": _ms(t_engine, t_docs),
            **report.timings,
            "scoring_ms": _ms(t_docs, t_scored),
            "rules_ms": _ms(t_scored, t_rules),
            "total_ms": _ms(started, t_rules),
        }
        return SearchOutcome(
            hits=page,
            total=result.total,
            window=len(window_hits),
            dropped=len(outcome.dropped),
            report=report,
            rules_version=rules.version,
            timings=timings,
            engine=self.backend.name,
            raw=result.raw,
            retrieval=retrieved.retrieval,
            retrieval_reason=retrieved.reason,
            kept_despite_drop=outcome.kept_despite_drop,
            query_type=query_type,
        )

    async def rerank(
        self,
        query: Query,
        documents: Sequence[Document],
        instruction: str,
        deadline: Deadline,
    ) -> ScoreReport:
        """Every document scored, or a typed error: the entry point of the routes that have no
        engine order to fall back on (/api/rerank, /v1/rerank, /api/explain). InvalidRequest for
        an image-only query on a text scorer, ModelNotReady, Overloaded (429), ScoringFailed."""
        self._check_modalities(query)
        self.require_ready()
        unread = self.unreadable(query)
        if unread is not None and self.strict_languages:
            raise InvalidRequest(unread + " (scorer.strict_languages)", field="query.text")
        report = await self.scoring.score(query, documents, instruction, deadline)
        if unread is not None:  # scored, since there is no engine order to give; but flagged
            for position in range(len(documents)):
                report.flags.setdefault(position, []).append(f"unreadable_script: {unread}")
        if isinstance(report.error, Overloaded):
            raise report.error  # 429: the queue is full, the caller should retry
        model_id = self.scoring.scorer.model_id
        if report.unscored:
            raise ScoringFailed(
                f"{report.reason}: {report.unscored} of {len(documents)} documents were left "
                "unscored; give a larger timeout_ms or send fewer documents",
                model=model_id,
                unscored=report.unscored,
            )
        if report.status != "ok":
            raise ScoringFailed(report.reason, model=model_id)
        return report

    def unreadable(self, query: Query) -> str | None:
        """Why the scorer cannot read the query's text (its script), or None."""
        if not query.text:
            return None
        scorer = self.scoring.scorer
        languages = languages_of(scorer)
        script = unreadable_script(query.text, languages)
        if script is None:
            return None
        return (
            f"the scorer {scorer.model_id} does not read {script} script "
            f"(it reads {', '.join(languages)}): engine order kept"
        )

    def require_ready(self) -> None:
        scorer = self.scoring.scorer
        state = scorer.state
        if not state.ready:
            raise ModelNotReady(
                f"model {scorer.model_id} is {state.status}"
                + (f": {state.reason}" if state.reason else ""),
                progress=state.progress,
            )

    def _check_modalities(self, query: Query) -> None:
        scorer = self.scoring.scorer
        if not query.text and not scorer.reads_images:
            raise InvalidRequest(
                f"the scorer {scorer.model_id} reads text only: give query text",
                field="query.text",
            )


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 3)
