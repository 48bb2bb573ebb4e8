"""Prometheus metrics, one registry per app (several apps in one process never clash).

Lower layers never import prometheus. The numbers come from three places:

- after a request: the HTTP middleware observes route/status/latency, and the search route hands
  its `SearchOutcome` to `observe_search` (stage timings, rerank status, cache hits/misses), the
  rerank routes their `ScoreReport` to `observe_scoring` (its stage timings, cache hits/misses);
- at scrape time: `ServicesCollector` reads what the parts already keep (`cache.stats()`,
  `rules.current.version`, `scorer.state`, and the micro-batcher's counters when the scorer
  has one);
- by hand-over: a part that wants to report events as they happen (the micro-batcher, the image
  loader) gets a small observer object with plain methods, through its `observe_with(observer)`
  hook (`Metrics.attach`). See `BatchObserver` and `ImageObserver`.

Labels are small fixed sets: route templates, status codes, stage names, reason buckets.
Never query text, product ids or raw error messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from sidecar.scoring.base import Batched, CallsModelServer, SharesEmbeddings

if TYPE_CHECKING:
    from sidecar.pipeline import SearchOutcome
    from sidecar.scoring_service import ScoreReport
    from sidecar.services import Services

# Latency buckets in seconds: a reranked search lives between a few ms (warm cache) and the
# deadline (2 s by default).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
WAIT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
WINDOW_BUCKETS = (0, 10, 25, 50, 100, 150, 200, 500)

# `SearchOutcome.timings` keys -> stage label.
STAGES = {
    "engine_ms": "engine",
    "documents_ms": "documents",
    "cache_get_ms": "cache_get",
    "images_ms": "images",
    "model_ms": "model",
    "cache_set_ms": "cache_set",
    "rules_ms": "rules",
    "total_ms": "total",
}

REASONS = ("none", "deadline", "model_not_ready", "model_failed", "overloaded", "other")
IMAGE_REASONS = (
    "too_large",
    "timeout",
    "not_found",
    "forbidden",
    "corrupt",
    "http_error",
    "other",
)
BREAKER_STATES = ("closed", "open", "half_open")


def reason_bucket(reason: str) -> str:
    """A degraded answer's free-text reason -> one of REASONS (the label stays small)."""
    text = reason.lower()
    if not text:
        return "none"
    if "deadline" in text or "did not finish" in text:
        return "deadline"
    if text.startswith("model not ready"):
        return "model_not_ready"
    if "overloaded" in text or "queue is full" in text:
        return "overloaded"
    if text.startswith("model failed") or "fail" in text:
        return "model_failed"
    return "other"


def image_reason_bucket(reason: str) -> str:
    """An image loader's failure reason -> one of IMAGE_REASONS."""
    text = reason.lower()
    for bucket, words in (
        ("too_large", ("large", "size", "pixels", "bytes")),
        ("timeout", ("timeout", "timed out", "deadline")),
        ("forbidden", ("forbidden", "private", "not allowed", "blocked", "scheme")),
        ("not_found", ("404", "not found", "missing")),
        ("corrupt", ("corrupt", "decode", "cannot identify", "truncated", "invalid image")),
        ("http_error", ("http", "status", "connect")),
    ):
        if any(w in text for w in words):
            return bucket
    return "other"


class BatchObserver:
    """What a micro-batcher reports, with plain calls (no prometheus types cross the seam):
    `batch(size, queue_wait_s)` once per forward pass (queue wait = time the oldest pair of the
    batch waited), `queue_depth(n)` whenever the queue length changes."""

    def __init__(self, sizes: Histogram, wait: Histogram, depth: Gauge) -> None:
        self._sizes, self._wait, self._depth = sizes, wait, depth

    def batch(self, size: int, queue_wait_s: float) -> None:
        self._sizes.observe(size)
        self._wait.observe(max(queue_wait_s, 0.0))

    def queue_depth(self, depth: int) -> None:
        self._depth.set(depth)


class ImageObserver:
    """What an image loader reports: `fetched()` per image loaded, `failed(reason)` per image
    that could not be (the reason is bucketed here, so any text is safe to pass)."""

    def __init__(self, images: Counter) -> None:
        self._images = images

    def fetched(self, count: int = 1) -> None:
        self._images.labels(result="ok").inc(count)

    def failed(self, reason: str) -> None:
        self._images.labels(result=image_reason_bucket(reason)).inc()


class Metrics:
    """Every collector of one app, on the app's own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "sidecar_http_requests",
            "HTTP requests by route template, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "sidecar_http_request_duration_seconds",
            "HTTP request latency by route template, method and status code.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "sidecar_http_requests_in_flight", "HTTP requests being served.", registry=r
        )
        self.stage = Histogram(
            "sidecar_stage_duration_seconds",
            "Time spent per stage of a search or a rerank call (engine, documents, cache_get, "
            "images, model, cache_set, rules, total; a rerank call has no engine, documents, "
            "rules or total).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.rerank = Counter(
            "sidecar_rerank",
            "Searches by rerank status (ok, partial, fallback) and reason bucket.",
            ["status", "reason"],
            registry=r,
        )
        self.cache_lookups = Counter(
            "sidecar_cache_lookups",
            "Pair-score cache lookups by result (hit, miss), counted per pair.",
            ["result"],
            registry=r,
        )
        self.cache_requests = Counter(
            "sidecar_cache_requests",
            "Searches by cache status (ok, unavailable, disabled).",
            ["status"],
            registry=r,
        )
        self.window = Histogram(
            "sidecar_rerank_window_documents",
            "Documents in the rerank window per search.",
            buckets=WINDOW_BUCKETS,
            registry=r,
        )
        self.document_flags = Counter(
            "sidecar_documents_image_failed",
            "Window documents scored on text alone because their image failed, by reason.",
            ["reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "sidecar_model_batch_size",
            "Pairs per model forward pass.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "sidecar_model_queue_wait_seconds",
            "Time a pair waited in the scoring queue before its forward pass.",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "sidecar_model_queue_depth", "Pairs waiting in the scoring queue.", registry=r
        )
        self.images = Counter(
            "sidecar_images",
            "Images loaded for scoring by result (ok or a failure reason bucket).",
            ["result"],
            registry=r,
        )
        self.batch_observer = BatchObserver(self.batch_size, self.queue_wait, self.queue_depth)
        self.image_observer = ImageObserver(self.images)
        self._services: Callable[[], Services | None] = lambda: None
        r.register(ServicesCollector(lambda: self._services()))

    def attach(self, services: Services) -> None:
        """Read `services` at scrape time and hand observers to the parts that take them."""
        self._services = lambda: services
        scorer = services.scorer
        if isinstance(scorer, Batched) and scorer.batcher is not None:
            scorer.batcher.observe_with(self.batch_observer)
        if services.images is not None:
            services.images.observe_with(self.image_observer)

    def detach(self) -> None:
        self._services = lambda: None

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        labels = {"route": route, "method": method, "status": str(status)}
        self.requests.labels(**labels).inc()
        self.latency.labels(**labels).observe(seconds)

    def observe_search(self, outcome: SearchOutcome) -> None:
        """Stage timings, rerank status, cache hits/misses and image failures of one search."""
        for key, stage in STAGES.items():
            ms = outcome.timings.get(key)
            if ms is not None:
                self.stage.labels(stage=stage).observe(ms / 1000)
        report = outcome.report
        self.rerank.labels(status=report.status, reason=reason_bucket(report.reason)).inc()
        self.cache_requests.labels(status=report.cache_status).inc()
        self.window.observe(outcome.window)
        self._observe_pairs(report)

    def observe_scoring(self, report: ScoreReport) -> None:
        """What a rerank route's scoring did (no engine, no rules): the scoring stages' timings,
        cache hits/misses and image failures. Search-only numbers (rerank status, window,
        cache requests) stay the searches'."""
        for key, stage in STAGES.items():
            ms = report.timings.get(key)
            if ms is not None:
                self.stage.labels(stage=stage).observe(ms / 1000)
        self._observe_pairs(report)

    def _observe_pairs(self, report: ScoreReport) -> None:
        self.cache_lookups.labels(result="hit").inc(report.cache_hits)
        self.cache_lookups.labels(result="miss").inc(report.cache_misses)
        for flags in report.flags.values():
            for flag in flags:
                if flag.startswith("image_failed"):
                    reason = flag.partition(":")[2]
                    self.document_flags.labels(reason=image_reason_bucket(reason)).inc()


class ServicesCollector(Collector):
    """Scrape-time numbers read from the running parts: cache counters and breaker state,
    live rules version, model readiness, and the scorer's own `stats()` when it has one."""

    def __init__(self, services: Callable[[], Services | None]) -> None:
        self._services = services

    def describe(self) -> list[Any]:
        return []  # dynamic: collected only while an app is running

    def collect(self) -> Iterator[Any]:
        services = self._services()
        if services is None:
            return
        yield from _cache_families(services.cache.stats())
        yield from _rules_families(services)
        yield from _model_families(services)


def _cache_families(stats: Mapping[str, Any]) -> Iterator[Any]:
    kind = str(stats.get("kind", "unknown"))
    errors = CounterMetricFamily(
        "sidecar_cache_errors", "Cache operations that failed (client side).", labels=["cache"]
    )
    errors.add_metric([kind], float(stats.get("errors", 0)))
    yield errors
    backend = CounterMetricFamily(
        "sidecar_cache_backend_lookups",
        "Keys looked up in the cache backend, by result, as the cache itself counts them.",
        labels=["cache", "result"],
    )
    backend.add_metric([kind, "hit"], float(stats.get("hits", 0)))
    backend.add_metric([kind, "miss"], float(stats.get("misses", 0)))
    yield backend
    breaker = GaugeMetricFamily(
        "sidecar_cache_breaker_state",
        "Cache circuit breaker: 1 for the current state (closed, open, half_open).",
        labels=["cache", "state"],
    )
    current = stats.get("breaker", "closed")
    for state in BREAKER_STATES:
        breaker.add_metric([kind, state], 1.0 if state == current else 0.0)
    yield breaker


def _rules_families(services: Services) -> Iterator[Any]:
    info = InfoMetricFamily("sidecar_rules", "The live rules version.")
    info.add_metric([], {"version": str(services.rules.current.version)})
    yield info
    problems = GaugeMetricFamily(
        "sidecar_rules_reload_errors",
        "Problems in the last rejected rules reload (0 when the file on disk is live).",
    )
    problems.add_metric([], float(len(services.rules.last_errors)))
    yield problems


def _model_families(services: Services) -> Iterator[Any]:
    scorer = services.scorer
    ready = GaugeMetricFamily(
        "sidecar_model_ready", "1 when the model is loaded and warm.", labels=["model"]
    )
    ready.add_metric([scorer.model_id], 1.0 if scorer.state.ready else 0.0)
    yield ready
    embeddings = scorer.embedding_stats() if isinstance(scorer, SharesEmbeddings) else {}
    if embeddings:  # replicas share document embeddings through the cache
        family = CounterMetricFamily(
            "sidecar_shared_embeddings",
            "Document embeddings read from the shared cache (another replica's, or earlier) "
            "and written to it.",
            labels=["result"],
        )
        family.add_metric(["read"], float(embeddings["read"]))
        family.add_metric(["written"], float(embeddings["written"]))
        yield family
        encoded = CounterMetricFamily(
            "sidecar_documents_encoded", "Documents this replica encoded itself."
        )
        encoded.add_metric([], float(embeddings["encoded"]))
        yield encoded
    if isinstance(scorer, CallsModelServer):
        yield from _server_families(scorer.server_stats())
    if not isinstance(scorer, Batched) or scorer.batcher is None:
        return
    stats = scorer.batcher.stats
    for key, help_text in (
        ("batches", "Forward passes run."),
        ("pairs", "Pairs scored by forward passes."),
        ("oom_retries", "Batches split in halves after running out of memory."),
    ):
        family = CounterMetricFamily(f"sidecar_model_{key}", help_text)
        family.add_metric([], float(getattr(stats, key)))
        yield family


def _server_families(stats: Mapping[str, Any]) -> Iterator[Any]:
    """A scorer that calls a model server (vLLM): its windows by outcome, and its breaker."""
    windows = CounterMetricFamily(
        "sidecar_model_server_windows",
        "Windows sent to the model server, by result: ok, failed, refused (the breaker was "
        "open), overloaded (the server answered 429).",
        labels=["result"],
    )
    for result in ("ok", "failed", "refused", "overloaded"):
        windows.add_metric([result], float(stats.get(result, 0)))
    yield windows
    breaker = GaugeMetricFamily(
        "sidecar_model_server_breaker_state",
        "Model server circuit breaker: 1 for the current state (closed, open, half_open).",
        labels=["state"],
    )
    current = stats.get("breaker", "closed")
    for state in BREAKER_STATES:
        breaker.add_metric([state], 1.0 if state == current else 0.0)
    yield breaker
