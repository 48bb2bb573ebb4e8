"""Cached scoring: a list of documents scored for a query within a Deadline, the cache first.

    images (image scorers) -> cache.get_many -> scorer.score(misses) -> cache.set_many
                           -> calibration (raw score -> P(relevant), if set)

`ScoringService.score` is the one way the flow (sidecar.pipeline) and operator work
(evaluation) score documents. It owns what makes a score cheap and safe to reuse:

- the cache read and write budgets: the read may use CACHE_SHARE of the time left (slower is all
  misses, `cache.status: timeout`); a write that outlives the deadline finishes after the answer;
- late writes: scores the model finishes after the deadline still land in the cache, unless a
  flush came after they were asked for (`flushed()` bumps the flush epoch);
- single flight: identical misses in flight at once cost one scorer call (`flights`);
- images, for a scorer that reads them here: loaded within IMAGE_SHARE of the time left, before
  the cache, since the pair key holds each image's content digest (a replaced image is a miss);
- the calibration, applied after the cache, so the cache holds raw scores.

It lives above the parts it joins (scorer, cache, images), which may not import each other.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sidecar.cache.base import CacheUnavailable, ScoreCache
from sidecar.cache.keys import pair_keys
from sidecar.cache.singleflight import SingleFlight
from sidecar.deadline import Deadline
from sidecar.documents import Document
from sidecar.query import Query
from sidecar.scoring.base import Scorer, Scores, identity_of

if TYPE_CHECKING:
    from sidecar.scoring.calibration import Calibration
    from sidecar.scoring.images import ImageObserver

log = logging.getLogger(__name__)

# Images may use at most this share of the time left when they start: the model needs the rest.
IMAGE_SHARE = 0.5
# The cache read may use at most this share of the time left: a slow Redis costs the request its
# cached scores (read as misses), not its deadline.
CACHE_SHARE = 0.25
# Kept back from the model's budget for what follows it (rules, the page, the JSON answer): a
# model that uses its whole budget must not carry the answer past timeout_ms (bench.faults saw
# +50-100 ms without it).
ANSWER_RESERVE_S = 0.03


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

    async def load_many(self, refs: Sequence[str | bytes], deadline: Deadline) -> LoadedImages:
        """(images, failure reasons, content digests), each by ref key, by `deadline`: refs not
        loaded by then are failures. A URL or path is its own key; bytes (a base64 query
        image) are keyed by `Query.image_hash`. Never raises for a bad ref."""
        ...

    def observe_with(self, observer: ImageObserver) -> None: ...

    async def close(self) -> None: ...


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

    def degrade(self, reason: str) -> None:
        """Scoring did not complete: `partial` where some scores are here, else `fallback`."""
        self.status = "partial" if any(s is not None for s in self.scores) else "fallback"
        self.reason = reason


class ScoringService:
    def __init__(
        self,
        scorer: Scorer,
        cache: ScoreCache,
        *,
        images: ImageLoader | None = None,
        calibration: Calibration | None = None,
        cache_prefix: str = "rr:",
        cache_ttl_s: int = 86_400,
    ) -> None:
        self.scorer = scorer
        self.cache = cache
        self.images = images  # None: the scorer reads no images here
        self.calibration = calibration  # raw score -> P(relevant), applied after the cache
        self.cache_prefix = cache_prefix
        self.cache_ttl_s = cache_ttl_s
        self.flights: SingleFlight[list[float]] = SingleFlight()  # identical misses: one call
        # Bumped by a cache flush: scores computed before it (late writes included) are not
        # written after it, so a flush is never undone by a request that was in flight.
        self.flush_epoch = 0
        self._background: set[asyncio.Task[Any]] = set()

    def calibrated_by(self, calibration: Calibration | None) -> ScoringService:
        """A service with every part of this one (scorer, cache, single flight) and another
        calibration: evaluation compares raw and calibrated answers on one model."""
        other = copy.copy(self)
        other.calibration = calibration
        return other

    def flushed(self) -> None:
        """Call before deleting cache keys (admin flush)."""
        self.flush_epoch += 1

    async def score(
        self, query: Query, documents: Sequence[Document], instruction: str, deadline: Deadline
    ) -> ScoreReport:
        """Scores for `documents`: cache first, the model on misses, within `deadline`. The
        cache holds raw scores; the calibration maps them after it (`raw_scores` keeps the
        scorer's own), so changing it invalidates nothing."""
        calibration = self.calibration
        if (
            calibration is not None
            and self.scorer.state.ready  # a loading scorer may not know its identity yet
            and calibration.score_identity != identity_of(self.scorer)
        ):
            # refused at start-up (wiring); a scorer whose identity changed since is not served
            # another model's probabilities
            report = ScoreReport(scores=[None] * len(documents))
            report.degrade(
                f"calibration {calibration.source} was fitted for score identity "
                f"{calibration.score_identity}, not the scorer's {identity_of(self.scorer)}"
            )
            return report
        report = await self._score_raw(query, documents, instruction, deadline)
        report.raw_scores = list(report.scores)
        if calibration is not None:
            report.scores = calibration.apply(report.scores)
        return report

    async def _score_raw(
        self, query: Query, documents: Sequence[Document], instruction: str, deadline: Deadline
    ) -> ScoreReport:
        report = ScoreReport(scores=[None] * len(documents))
        if not documents:
            return report
        query = await decoded(query)
        epoch = self.flush_epoch
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
            identity_of(self.scorer),
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
        state = self.scorer.state
        if not state.ready:
            report.degrade(
                f"model not ready ({state.status}{': ' + state.reason if state.reason else ''})"
            )
            return report

        t2 = time.perf_counter()
        # the model gets what is left, less what the rules and the answer need after it
        model = deadline.less(ANSWER_RESERVE_S)
        report.timings["model_budget_ms"] = model.budget_ms
        images = loaded.images if loaded is not None else None
        flight = (tuple(keys[i] for i in misses), frozenset(text_only & set(misses)))
        task = self.flights.task(
            flight,
            lambda: self.scorer.score(
                query, [documents[i] for i in misses], instruction, images, deadline=model
            ),
        )
        # Only scores the model saw with the product's image are cacheable.
        storable = {keys[i]: j for j, i in enumerate(misses) if i not in text_only}
        try:
            fresh = await asyncio.wait_for(asyncio.shield(task), timeout=model.wait_s())
        except TimeoutError:
            self._store_later(task, storable, epoch)
            report.unscored = len(misses)
            report.degrade(
                f"model did not finish within the deadline "
                f"({model.budget * 1000:.0f} ms left for {len(misses)} documents)"
            )
            return report
        except Exception as exc:  # the model's failure degrades the answer, never fails it
            log.warning("scoring failed", exc_info=True)
            report.error = exc
            report.degrade(f"model failed: {exc.__class__.__name__}: {exc}")
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

    async def _cache_get(
        self, keys: list[str], report: ScoreReport, deadline: Deadline
    ) -> list[float | None]:
        read = deadline.share(CACHE_SHARE)
        report.timings["cache_budget_ms"] = read.budget_ms
        try:
            return await asyncio.wait_for(self.cache.get_many(keys), timeout=read.wait_s())
        except TimeoutError:
            report.cache_status = "timeout"
            log.warning("cache read cut at its %.0f ms budget", read.budget * 1000)
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
            await asyncio.wait_for(asyncio.shield(write), timeout=deadline.wait_s())
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
        share = deadline.share(IMAGE_SHARE)
        report.timings["images_budget_ms"] = share.budget_ms
        loaded = await self.images.load_many(refs, share)
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


async def decoded(query: Query) -> Query:
    """The query with a large base64 image decoded, in a worker thread (not on the loop)."""
    return await asyncio.to_thread(query.decoded) if query.pending else query


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.info("background cache write failed: %s", task.exception())


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 3)
