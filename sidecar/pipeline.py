"""The request flow, top to bottom, and nothing else:

    query -> backend.search -> documents.from_hits -> images -> cache.get_many -> scorer.score
          -> cache.set_many -> calibration (raw score -> P(relevant), if any) -> rules.apply -> page

A request carries one Deadline (sidecar.deadline), made when it starts and handed to every
stage: the engine gets its share of what is left, the images and the model get the rest, and
`timings` says what each stage was given (`*_budget_ms`). When
scoring cannot finish in time (or fails) the answer uses cached scores where it has them and the
engine's order elsewhere, and says so: `rerank_status` is `partial` or `fallback` with a reason.
Scores computed after the deadline still land in the cache, so the next identical request is warm.

One module of ~430 lines on purpose: `search`, `score` and `rerank` are one flow read top to
bottom, sharing the report, the deadline and the single flight; splitting them would make a reader
jump files to follow one request.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import TYPE_CHECKING, Any, Protocol

from sidecar import documents as docs_mod
from sidecar.backends.base import Filter, Hit, SearchBackend
from sidecar.cache.base import CacheUnavailable, ScoreCache
from sidecar.cache.keys import pair_keys
from sidecar.cache.singleflight import SingleFlight
from sidecar.config import FieldMap
from sidecar.deadline import Deadline
from sidecar.documents import Document
from sidecar.errors import EngineTimeout, InvalidRequest, ModelNotReady, Overloaded, ScoringFailed
from sidecar.query import Query
from sidecar.rules import Candidate, LoadedRules, Ranked, apply
from sidecar.scoring.base import Scorer, Scores, identity_of, languages_of
from sidecar.writing_systems import unreadable_script

if TYPE_CHECKING:
    from sidecar.rules.store import RuleStore
    from sidecar.scoring.calibration import Calibration
    from sidecar.scoring.images import ImageObserver

log = logging.getLogger(__name__)

# Images may use at most this share of the time left when they start: the model needs the rest.
IMAGE_SHARE = 0.5
# The cache read may use at most this share of the time left: a slow Redis costs the request its
# cached scores (read as misses), not its deadline.
CACHE_SHARE = 0.25
# Kept back from the model's budget for what follows it (rules, the page, the JSON answer).
ANSWER_RESERVE_S = 0.03
# Documents made from hits, kept for the hits seen again (a warm product is read from its
# `_source` once, not on every search that finds it): this many, the least recent dropped.
DOCUMENT_MEMO = 8192


class LoadedImages(Protocol):
    @property
    def images(self) -> Mapping[str, Any]: ...

    @property
    def failures(self) -> Mapping[str, str]: ...

    @property
    def digests(self) -> Mapping[str, str]:
        """What each loaded image's bytes hash to: the pair key's image part."""
        ...


class ImageLoader(Protocol):
    """Loads images for scorers that read them (sidecar.scoring.images implements it)."""

    async def load_many(
        self, refs: Sequence[str | bytes], deadline: float | None = None
    ) -> LoadedImages:
        """(images, failure reasons, content digests), each by ref key, by `deadline` (a
        perf_counter instant): refs not loaded by then are failures. A URL or path is its own
        key; bytes (a base64 query image) are keyed by `Query.image_hash`. Never raises for a
        bad ref."""
        ...

    def observe_with(self, observer: ImageObserver) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class SearchParams:
    index: str
    query: Query
    filters: Sequence[Filter] = ()
    offset: int = 0
    size: int = 10
    window: int = 100
    instruction: str = ""
    timeout_s: float = 2.0
    raw_query: Mapping[str, Any] | None = None
    rules: LoadedRules | None = None  # None: the live default rules
    arrived: float | None = None  # perf_counter instant the request came in; None: now


@dataclass
class ScoreReport:
    """How scoring went for one list of documents."""

    scores: list[float | None]  # what answers and rules use: calibrated when there is one
    status: str = "ok"  # ok | partial | fallback
    reason: str = ""
    cache_hits: int = 0
    cache_misses: int = 0
    cache_status: str = "ok"  # ok | unavailable | timeout (read cut at its budget) | disabled
    flags: dict[int, list[str]] = field(default_factory=dict)  # document position -> flags
    timings: dict[str, float] = field(default_factory=dict)
    error: Exception | None = None  # what the scorer raised, for routes that must not degrade
    unscored: int = 0  # documents the model did not finish before the deadline
    raw_scores: list[float | None] = field(default_factory=list)  # the scorer's, as cached

    def cache_summary(self) -> dict[str, Any]:
        """The `cache` part of every answer: status, hits, misses."""
        return {"status": self.cache_status, "hits": self.cache_hits, "misses": self.cache_misses}


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
    dropped: int
    report: ScoreReport
    rules_version: str
    timings: dict[str, float]
    engine: str
    raw: Mapping[str, Any] = field(default_factory=dict)  # the engine's extras (aggregations...)


class Pipeline:
    def __init__(
        self,
        backend: SearchBackend,
        scorer: Scorer,
        cache: ScoreCache,
        rules: RuleStore,
        field_map: FieldMap,
        *,
        cache_prefix: str = "rr:",
        cache_ttl_s: int = 86_400,
        engine_share: float = 0.6,
        images: ImageLoader | None = None,
        strict_languages: bool = False,
        calibration: Calibration | None = None,
    ) -> None:
        self.backend = backend
        self.scorer = scorer
        self.cache = cache
        self.rules = rules  # `.current` is the live LoadedRules
        self.field_map = field_map
        self.cache_prefix = cache_prefix
        self.cache_ttl_s = cache_ttl_s
        self.engine_share = engine_share
        self.images = images
        self.strict_languages = (
            strict_languages  # the rerank APIs refuse what the scorer cannot read
        )
        self.calibration = calibration  # raw score -> P(relevant), applied after the cache
        self._background: set[asyncio.Task[Any]] = set()
        self.flights: SingleFlight[list[float]] = SingleFlight()  # identical misses: one call
        # Bumped by a cache flush: scores computed before it (late writes included) are not
        # written after it, so a flush is never undone by a request that was in flight.
        self.flush_epoch = 0
        self._documents = _DocumentMemo(DOCUMENT_MEMO)

    def calibrated_by(self, calibration: Calibration | None) -> Pipeline:
        """A pipeline with every part of this one (scorer, cache, rules, single flight) and
        another calibration: evaluation compares raw and calibrated answers on one model."""
        other = copy.copy(self)
        other.calibration = calibration
        return other

    def flushed(self) -> None:
        """Call before deleting cache keys (admin flush)."""
        self.flush_epoch += 1

    async def search(self, p: SearchParams) -> SearchOutcome:
        started = time.perf_counter()
        # one budget for the whole request: from its arrival when the route knows it
        deadline = Deadline((p.arrived or started) + p.timeout_s)
        rules = p.rules or self.rules.current
        self._check_modalities(p.query)
        query = await _decoded(p.query)
        fetch = max(p.window, p.offset + p.size)  # beyond the window the engine order continues
        engine_timeout = deadline.left() * self.engine_share
        try:
            result = await asyncio.wait_for(
                self.backend.search(
                    p.index, query.text or None, p.filters, fetch, engine_timeout, p.raw_query
                ),
                timeout=engine_timeout + 0.05,
            )
        except TimeoutError as exc:
            raise EngineTimeout(
                f"{self.backend.name} did not answer within {engine_timeout * 1000:.0f} ms",
                engine=self.backend.name,
            ) from exc
        t_engine = time.perf_counter()
        window_hits, tail_hits = result.hits[: p.window], result.hits[p.window :]
        documents = self._documents.of(window_hits, self.field_map)
        t_docs = time.perf_counter()

        unread = self.unreadable(query)
        if unread is None:
            report = await self.score(query, documents, p.instruction, deadline)
        else:  # a confident order from a model that cannot read the query is worse than none
            report = ScoreReport(scores=[None] * len(documents))
            _degrade(report, unread)
        t_scored = time.perf_counter()

        candidates = [
            Candidate(
                id=doc.id,
                engine_rank=i,
                engine_score=hit.score,
                model_score=report.scores[i],
                fields=doc.fields,
            )
            for i, (hit, doc) in enumerate(zip(window_hits, documents, strict=True))
        ]
        outcome = apply(rules.rules, candidates, query.text)
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
            "engine_budget_ms": round(engine_timeout * 1000, 3),
            "engine_ms": _ms(started, t_engine),
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
        )

    async def score(
        self,
        query: Query,
        documents: Sequence[Document],
        instruction: str,
        deadline: Deadline | float,
    ) -> ScoreReport:
        """Scores for `documents`: cache first, the model on misses, within the deadline (a
        Deadline, or a perf_counter instant). The cache holds raw scores; the calibration maps
        them after it (`raw_scores` keeps the scorer's own), so changing it invalidates nothing."""
        calibration = self.calibration
        if (
            calibration is not None
            and self.scorer.state.ready  # a loading scorer may not know its identity yet
            and calibration.score_identity != identity_of(self.scorer)
        ):
            # refused at start-up (wiring); a scorer whose identity changed since is not served
            # another model's probabilities
            report = ScoreReport(scores=[None] * len(documents))
            _degrade(
                report,
                f"calibration {calibration.source} was fitted for score identity "
                f"{calibration.score_identity}, not the scorer's {identity_of(self.scorer)}",
            )
            return report
        report = await self._score_raw(query, documents, instruction, Deadline.of(deadline))
        report.raw_scores = list(report.scores)
        if calibration is not None:
            report.scores = calibration.apply(report.scores)
        return report

    async def _score_raw(
        self,
        query: Query,
        documents: Sequence[Document],
        instruction: str,
        deadline: Deadline,
    ) -> ScoreReport:
        report = ScoreReport(scores=[None] * len(documents))
        if not documents:
            return report
        query = await _decoded(query)
        epoch = self.flush_epoch
        identity = identity_of(self.scorer)
        loaded: LoadedImages | None = None
        text_only: set[int] = set()
        if self.images is not None and self.scorer.reads_images:
            # Before the cache: an image-reading scorer's key holds the images' content.
            t_images = time.perf_counter()
            loaded, text_only = await self._load_images(query, documents, report, deadline)
            report.timings["images_ms"] = _ms(t_images, time.perf_counter())
        query_key, content_keys = _content_keys(query, documents, loaded)
        keys = pair_keys(
            self.cache_prefix,
            self.scorer.model_id,
            instruction,
            query_key,
            zip((d.id for d in documents), content_keys, strict=True),
            identity,
        )
        t0 = time.perf_counter()
        cached = await self._cache_get(keys, report, deadline)
        report.timings["cache_get_ms"] = _ms(t0, time.perf_counter())
        report.scores = list(cached)
        misses = [i for i, s in enumerate(cached) if s is None]
        report.cache_hits = len(documents) - len(misses)
        report.cache_misses = len(misses)
        if not misses:
            return report
        if not self.scorer.state.ready:
            _degrade(
                report,
                f"model not ready ({self.scorer.state.status}"
                f"{': ' + self.scorer.state.reason if self.scorer.state.reason else ''})",
            )
            return report

        t2 = time.perf_counter()
        images = loaded.images if loaded is not None else None
        flight = (tuple(keys[i] for i in misses), frozenset(text_only & set(misses)))
        task = self.flights.task(
            flight,
            lambda: self.scorer.score(query, [documents[i] for i in misses], instruction, images),
        )
        # Only scores the model saw with the product's image are cacheable.
        storable = {keys[i]: j for j, i in enumerate(misses) if i not in text_only}
        # what is left, less what the rules and the answer need after it: a model that uses its
        # whole budget must not carry the answer past timeout_ms (bench.faults saw +50-100 ms)
        remaining = max(deadline.left() - ANSWER_RESERVE_S, 0.0)
        report.timings["model_budget_ms"] = round(remaining * 1000, 3)
        try:
            fresh = await asyncio.wait_for(asyncio.shield(task), timeout=max(remaining, 0.001))
        except TimeoutError:
            self._store_later(task, storable, epoch)
            report.unscored = len(misses)
            _degrade(
                report,
                f"model did not finish within the deadline "
                f"({max(remaining, 0) * 1000:.0f} ms left for {len(misses)} documents)",
            )
            return report
        except Exception as exc:  # the model's failure degrades the answer, never fails it
            log.warning("scoring failed", exc_info=True)
            report.error = exc
            _degrade(report, f"model failed: {exc.__class__.__name__}: {exc}")
            return report
        finally:
            report.timings["model_ms"] = _ms(t2, time.perf_counter())
        for j, i in enumerate(misses):
            report.scores[i] = fresh[j]
        for j, flags in (fresh.flags if isinstance(fresh, Scores) else {}).items():
            # the scorer says this score was made without something (a peer's failed image)
            report.flags.setdefault(misses[j], []).extend(flags)
            storable.pop(keys[misses[j]], None)
        t3 = time.perf_counter()
        if epoch == self.flush_epoch:
            await self._cache_set({key: fresh[j] for key, j in storable.items()}, report, deadline)
        report.timings["cache_set_ms"] = _ms(t3, time.perf_counter())
        return report

    async def rerank(
        self,
        query: Query,
        documents: Sequence[Document],
        instruction: str,
        deadline: Deadline | float,
    ) -> ScoreReport:
        """Every document scored, or a typed error: the entry point of the routes that have no
        engine order to fall back on (/api/rerank, /v1/rerank, /api/explain). InvalidRequest for
        an image-only query on a text scorer, ModelNotReady, Overloaded (429), ScoringFailed."""
        self._check_modalities(query)
        self.require_ready()
        unread = self.unreadable(query)
        if unread is not None and self.strict_languages:
            raise InvalidRequest(unread + " (scorer.strict_languages)", field="query.text")
        report = await self.score(query, documents, instruction, deadline)
        if unread is not None:  # scored, since there is no engine order to give; but flagged
            for position in range(len(documents)):
                report.flags.setdefault(position, []).append(f"unreadable_script: {unread}")
        if isinstance(report.error, Overloaded):
            raise report.error  # 429: the queue is full, the caller should retry
        if report.unscored:
            raise ScoringFailed(
                f"{report.reason}: {report.unscored} of {len(documents)} documents were left "
                "unscored; give a larger timeout_ms or send fewer documents",
                model=self.scorer.model_id,
                unscored=report.unscored,
            )
        if report.status != "ok":
            raise ScoringFailed(report.reason, model=self.scorer.model_id)
        return report

    def unreadable(self, query: Query) -> str | None:
        """Why the scorer cannot read the query's text (its script), or None."""
        if not query.text:
            return None
        languages = languages_of(self.scorer)
        script = unreadable_script(query.text, languages)
        if script is None:
            return None
        return (
            f"the scorer {self.scorer.model_id} does not read {script} script "
            f"(it reads {', '.join(languages)}): engine order kept"
        )

    def require_ready(self) -> None:
        state = self.scorer.state
        if not state.ready:
            raise ModelNotReady(
                f"model {self.scorer.model_id} is {state.status}"
                + (f": {state.reason}" if state.reason else ""),
                progress=state.progress,
            )

    def _check_modalities(self, query: Query) -> None:
        if not query.text and not self.scorer.reads_images:
            raise InvalidRequest(
                f"the scorer {self.scorer.model_id} reads text only: give query text",
                field="query.text",
            )

    async def _cache_get(
        self, keys: list[str], report: ScoreReport, deadline: Deadline
    ) -> list[float | None]:
        budget = deadline.left() * CACHE_SHARE
        report.timings["cache_budget_ms"] = round(budget * 1000, 3)
        try:
            return await asyncio.wait_for(self.cache.get_many(keys), timeout=max(budget, 0.001))
        except TimeoutError:
            report.cache_status = "timeout"
            log.warning("cache read cut at its %.0f ms budget", budget * 1000)
        except CacheUnavailable as exc:
            report.cache_status = "unavailable"
            log.warning("cache unavailable on read: %s", exc)
        return [None] * len(keys)

    async def _cache_set(
        self, items: dict[str, float], report: ScoreReport, deadline: Deadline
    ) -> None:
        """Write within what is left of the deadline; a write that needs longer goes on in the
        background (its scores are still good), so the answer is not held for it."""
        if report.cache_status == "unavailable" or not items:
            return
        write = asyncio.create_task(self.cache.set_many(items, self.cache_ttl_s))
        try:
            await asyncio.wait_for(asyncio.shield(write), timeout=max(deadline.left(), 0.001))
        except TimeoutError:
            self._hold(write)
        except CacheUnavailable as exc:
            report.cache_status = "unavailable"
            log.warning("cache unavailable on write: %s", exc)

    async def _load_images(
        self,
        query: Query,
        documents: Sequence[Document],
        report: ScoreReport,
        deadline: Deadline,
    ) -> tuple[LoadedImages, set[int]]:
        """Images for a scorer that reads them, within IMAGE_SHARE of the time left (the model
        needs the rest); documents whose image failed or came too late are flagged and returned
        by position so their text-only scores stay out of the cache."""
        assert self.images is not None
        positions = range(len(documents))
        refs: list[str | bytes] = [d.image_url for d in documents if d.image_url]
        if query.image_bytes is not None:
            refs.append(query.image_bytes)
        elif query.image_url:
            refs.append(query.image_url)
        budget = deadline.left() * IMAGE_SHARE
        report.timings["images_budget_ms"] = round(budget * 1000, 3)
        loaded = await self.images.load_many(refs, deadline=time.perf_counter() + budget)
        failures = loaded.failures
        text_only: set[int] = set()
        query_key = query.image_url or query.image_hash
        if query.has_image and query_key in failures:
            # Every pair was scored without the query's image: flag them all, cache none.
            for pos in positions:
                report.flags.setdefault(pos, []).append(
                    f"query_image_failed: {failures[query_key]}"
                )
                text_only.add(pos)
        for doc, pos in zip(documents, positions, strict=True):
            if doc.image_url and doc.image_url in failures:
                report.flags.setdefault(pos, []).append(f"image_failed: {failures[doc.image_url]}")
                text_only.add(pos)
        return loaded, text_only

    def _store_later(
        self, task: asyncio.Task[list[float]], storable: dict[str, int], epoch: int
    ) -> None:
        async def store() -> None:
            try:
                fresh = await task
                if epoch != self.flush_epoch:
                    return  # a flush came after these scores were asked for
                if isinstance(fresh, Scores):  # flagged scores are not cacheable
                    for key in [k for k, j in storable.items() if j in fresh.flags]:
                        del storable[key]
                await self.cache.set_many(
                    {k: fresh[j] for k, j in storable.items()}, self.cache_ttl_s
                )
            except Exception:  # a late write is best effort by design
                log.info("late cache write skipped", exc_info=True)

        self._hold(asyncio.create_task(store()))

    def _hold(self, task: asyncio.Task[Any]) -> None:
        """Keep a background write referenced until it ends; its failure is only logged."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(_log_failure)

    async def drain(self) -> None:
        """Wait for late cache writes (shutdown, tests)."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


class _DocumentMemo:
    """`documents.from_hits`, remembering the last `size` hits' documents: a hit seen again
    (same index and id, the same values in the fields the field map reads) gets the document
    made the first time, so a warm window costs a tuple comparison per hit instead of reading
    the fields and hashing what the model reads. from_hit reads only those fields, so the
    document is the same whatever else the `_source` holds (the drop-in may fetch all of it,
    /search the mapped fields); a new field map starts afresh."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._fields: FieldMap | None = None
        self._names: list[str] = []
        self._known: OrderedDict[tuple[str, str], tuple[tuple[Any, ...], Document]] = OrderedDict()

    def of(self, hits: Sequence[Hit], field_map: FieldMap) -> list[Document]:
        if field_map is not self._fields:
            self._fields, self._names = field_map, field_map.source_fields()
            self._known.clear()
        known, names = self._known, self._names
        out: list[Document] = []
        for hit in hits:
            key = (hit.index, hit.id)
            values = tuple(map(hit.source.get, names, repeat(_ABSENT)))
            seen = known.get(key)
            if seen is not None and seen[0] == values:
                known.move_to_end(key)
                out.append(seen[1])
                continue
            document = docs_mod.from_hit(hit, field_map)
            known[key] = (values, document)
            known.move_to_end(key)
            if len(known) > self.size:
                known.popitem(last=False)
            out.append(document)
        return out


_ABSENT = object()  # a field the `_source` does not have (not the same as one set to null)


def _content_keys(
    query: Query, documents: Sequence[Document], loaded: LoadedImages | None
) -> tuple[str, list[str]]:
    """The query part and each document's part of the pair keys. For a scorer that reads images
    here, an image counts by its content digest, not its URL (a replaced image is a miss); one
    that could not be loaded has no digest, so its text-only score gets a key never stored."""
    if loaded is None:
        return query.cache_key, [d.content_hash for d in documents]

    def image_part(ref: str | None) -> str:
        if ref is None:
            return ""
        return loaded.digests.get(ref) or "unloaded:" + ref

    query_image = query.image_hash if query.image_bytes is not None else image_part(query.image_url)
    return (
        f"{query.text}\x1f{query_image}",
        [f"{d.content_hash}\x1f{image_part(d.image_url)}" for d in documents],
    )


async def _decoded(query: Query) -> Query:
    """The query with a large base64 image decoded, in a worker thread (not on the loop)."""
    return await asyncio.to_thread(query.decoded) if query.pending else query


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("background cache write failed: %s", task.exception())


def _degrade(report: ScoreReport, reason: str) -> None:
    report.status = "partial" if any(s is not None for s in report.scores) else "fallback"
    report.reason = reason


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 3)
