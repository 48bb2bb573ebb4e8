"""GET /metrics and the JSON request log, on the embedded default and a real Redis."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from sidecar.logs import JsonFormatter, RequestIdFilter
from sidecar.observability.metrics import Metrics, image_reason_bucket, reason_bucket

QUERY = "waterproof hiking boots"


def scrape(client: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The sidecar's log records as JSON lines, exactly as production writes them."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("sidecar")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield buffer
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def parsed(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_a_search_moves_request_stage_rerank_and_cache_metrics(client) -> None:
    body = client.post("/search", json={"query": QUERY, "window": 30}).json()
    assert body["rerank_status"] == "ok" and body["window"] == 30
    first = scrape(client)
    assert (
        value(first, "sidecar_http_requests_total", route="/search", method="POST", status="200")
        == 1
    )
    assert (
        value(
            first,
            "sidecar_http_request_duration_seconds_count",
            route="/search",
            method="POST",
            status="200",
        )
        == 1
    )
    for stage in ("engine", "documents", "cache_get", "model", "cache_set", "rules", "total"):
        assert value(first, "sidecar_stage_duration_seconds_count", stage=stage) == 1, stage
    assert value(first, "sidecar_rerank_total", status="ok", reason="none") == 1
    hits0 = value(first, "sidecar_cache_lookups_total", result="hit")
    assert value(first, "sidecar_cache_lookups_total", result="miss") + hits0 == 30
    assert value(first, "sidecar_rerank_window_documents_sum") == 30

    client.post("/search", json={"query": QUERY, "window": 30})  # identical: all from cache
    second = scrape(client)
    assert value(second, "sidecar_cache_lookups_total", result="hit") == hits0 + 30
    assert value(second, "sidecar_rerank_total", status="ok", reason="none") == 2
    # /metrics scrapes are requests too, counted under their own route
    assert (
        value(second, "sidecar_http_requests_total", route="/metrics", method="GET", status="200")
        == 1
    )
    # scrape-time numbers read from the running parts
    assert value(second, "sidecar_rules_info", version=body["rules_version"]) == 1
    assert value(second, "sidecar_model_ready", model=body["model"]) == 1
    assert value(second, "sidecar_cache_breaker_state", cache="memory", state="closed") == 1


def test_errors_are_counted_by_route_template_and_status(client) -> None:
    assert client.post("/search", json={"query": QUERY, "size": -1}).status_code == 422
    assert client.get("/no/such/page/12345").status_code == 404
    samples = scrape(client)
    assert (
        value(samples, "sidecar_http_requests_total", route="/search", method="POST", status="422")
        == 1
    )
    # unmatched paths share one label: raw paths never become label values
    assert (
        value(samples, "sidecar_http_requests_total", route="unmatched", method="GET", status="404")
        == 1
    )
    assert not any("12345" in str(labels) for _, labels in samples)


class SlowScorer:
    """The shared MiniLM behind a model that takes longer than any deadline here."""

    reads_images = False

    def __init__(self, inner: Any, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.model_id, self.state = inner.model_id, inner.state

    async def load(self) -> None:
        return None

    async def score(self, *args: Any, **kwargs: Any) -> list[float]:
        await asyncio.sleep(self.delay_s)
        return list(await self.inner.score(*args, **kwargs))

    async def close(self) -> None:
        return None


def test_deadline_fallback_is_counted_under_its_reason(client_factory, minilm) -> None:
    client = client_factory(scorer=SlowScorer(minilm, delay_s=0.5))
    body = client.post("/search", json={"query": QUERY, "timeout_ms": 200}).json()
    assert body["rerank_status"] == "fallback" and "deadline" in body["reason"]
    samples = scrape(client)
    assert value(samples, "sidecar_rerank_total", status="fallback", reason="deadline") == 1
    assert value(samples, "sidecar_rerank_total", status="ok", reason="none") == 0


@pytest.mark.redis
def test_cache_outage_shows_in_errors_and_breaker_state(client_factory, own_redis) -> None:
    client = client_factory(
        cache={
            "kind": "redis",
            "redis_url": own_redis.url,
            "breaker_cooldown_s": 60,
            "breaker_failures": 1,
        }  # one failed search opens it
    )
    own_redis.stop()
    body = client.post("/search", json={"query": QUERY, "window": 10}).json()
    assert body["cache"]["status"] == "unavailable"
    samples = scrape(client)
    assert value(samples, "sidecar_cache_errors_total", cache="redis") >= 1
    assert value(samples, "sidecar_cache_breaker_state", cache="redis", state="open") == 1
    assert value(samples, "sidecar_cache_breaker_state", cache="redis", state="closed") == 0
    assert value(samples, "sidecar_cache_requests_total", status="unavailable") == 1


def test_two_apps_in_one_process_keep_separate_numbers(client_factory) -> None:
    a, b = client_factory(), client_factory()
    a.post("/search", json={"query": QUERY, "window": 5})
    a.post("/search", json={"query": QUERY, "window": 5})
    key = {"route": "/search", "method": "POST", "status": "200"}
    assert value(scrape(a), "sidecar_http_requests_total", **key) == 2
    assert value(scrape(b), "sidecar_http_requests_total", **key) == 0


def test_request_id_is_echoed_and_on_the_log_line(client, log_lines) -> None:
    response = client.post(
        "/search", json={"query": QUERY, "window": 20}, headers={"X-Request-ID": "req-abc.123"}
    )
    assert response.headers["x-request-id"] == "req-abc.123"
    lines = [r for r in parsed(log_lines) if r["msg"] == "request"]
    assert len(lines) == 1
    line = lines[0]
    assert line["request_id"] == "req-abc.123" and line["level"] == "info"
    assert line["route"] == "/search" and line["status"] == 200 and line["window"] == 20
    assert line["rerank_status"] == "ok" and line["cache_hits"] + line["cache_misses"] == 20
    assert line["timings"]["total_ms"] > 0 and line["duration_ms"] > 0
    assert "query" not in line and QUERY not in log_lines.getvalue()


def test_request_id_is_generated_when_missing_or_unsafe(client) -> None:
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    other = client.get("/healthz").headers["x-request-id"]
    assert other != generated
    unsafe = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"
    assert len(unsafe.headers["x-request-id"]) == 32


def test_query_text_is_logged_only_when_configured(client_factory, log_lines) -> None:
    client = client_factory(log_queries=True)
    client.post("/search", json={"query": QUERY}, headers={"X-Request-ID": "with-query"})
    line = next(r for r in parsed(log_lines) if r.get("request_id") == "with-query")
    assert line["query"] == QUERY


@pytest.mark.redis
def test_every_log_line_of_a_request_carries_its_id(client_factory, own_redis, log_lines) -> None:
    client = client_factory(cache={"kind": "redis", "redis_url": own_redis.url})
    own_redis.stop()  # the pipeline logs a warning while serving the request
    client.post("/search", json={"query": QUERY, "window": 5}, headers={"X-Request-ID": "r-42"})
    records = parsed(log_lines)
    warning = next(r for r in records if r["msg"].startswith("cache unavailable"))
    assert warning["request_id"] == "r-42" and warning["level"] == "warning"
    assert next(r for r in records if r["msg"] == "request")["request_id"] == "r-42"


def test_json_formatter_writes_the_exception_chain() -> None:
    record: logging.LogRecord | None = None
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise RuntimeError("outer") from inner
    except RuntimeError as exc:
        record = logging.LogRecord(
            "t", logging.ERROR, __file__, 1, "boom", None, (type(exc), exc, exc.__traceback__)
        )
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "error" and line["exc_type"] == "RuntimeError"
    assert "KeyError: 'inner'" in line["exc"] and "RuntimeError: outer" in line["exc"]
    assert "direct cause" in line["exc"]


def test_batch_and_image_observers_feed_histograms() -> None:
    metrics = Metrics()
    metrics.batch_observer.batch(8, 0.004)
    metrics.batch_observer.batch(32, 0.020)
    metrics.batch_observer.queue_depth(17)
    metrics.image_observer.fetched(3)
    metrics.image_observer.failed("image is 40 MB, larger than the 10 MB limit")
    get = metrics.registry.get_sample_value
    assert get("sidecar_model_batch_size_count") == 2
    assert get("sidecar_model_batch_size_sum") == 40
    assert get("sidecar_model_queue_wait_seconds_bucket", {"le": "0.005"}) == 1
    assert get("sidecar_model_queue_depth") == 17
    assert get("sidecar_images_total", {"result": "ok"}) == 3
    assert get("sidecar_images_total", {"result": "too_large"}) == 1


@pytest.mark.parametrize(
    ("reason", "bucket"),
    [
        ("", "none"),
        ("model did not finish within the deadline (0 ms left for 30 documents)", "deadline"),
        ("model not ready (loading)", "model_not_ready"),
        ("model failed: RuntimeError: CUDA error", "model_failed"),
        ("model failed: Overloaded: scoring queue is full (4096 pairs waiting)", "overloaded"),
        ("something new", "other"),
    ],
)
def test_reasons_fall_into_a_small_label_set(reason: str, bucket: str) -> None:
    assert reason_bucket(reason) == bucket


def test_image_reasons_fall_into_a_small_label_set() -> None:
    assert image_reason_bucket("HTTP 404 from cdn") == "not_found"
    assert image_reason_bucket("address 10.0.0.1 is private: forbidden") == "forbidden"
    assert image_reason_bucket("cannot identify image file") == "corrupt"
    assert image_reason_bucket("read timed out") == "timeout"


def test_an_unexpected_error_keeps_the_id_and_logs_the_chain(client, log_lines) -> None:
    def broken() -> None:
        try:
            raise KeyError("inner cause")
        except KeyError as exc:
            raise RuntimeError("boom") from exc

    client.app.add_api_route("/test-broken", broken)
    caller = TestClient(client.app, raise_server_exceptions=False)  # the app is already running
    response = caller.get("/test-broken", headers={"X-Request-ID": "err-1"})
    assert response.status_code == 500 and response.json()["error"] == "internal"
    assert response.headers["x-request-id"] == "err-1"
    records = [r for r in parsed(log_lines) if r.get("request_id") == "err-1"]
    request_line = next(r for r in records if r["msg"] == "request")
    assert request_line["level"] == "error" and request_line["status"] == 500
    assert request_line["route"] == "/test-broken"
    error = next(r for r in records if "exc" in r)
    assert "KeyError: 'inner cause'" in error["exc"] and "RuntimeError: boom" in error["exc"]
    key = {"route": "/test-broken", "method": "GET", "status": "500"}
    assert value(scrape(client), "sidecar_http_requests_total", **key) == 1


class BatchedMiniLM:
    """MiniLM behind the real micro-batcher, as the Lychee scorer runs: one pair per item."""

    reads_images = False

    def __init__(self, inner: Any) -> None:
        from sidecar.scoring.batching import MicroBatcher

        self.inner, self.model_id, self.state = inner, inner.model_id, inner.state
        self.batcher: Any = MicroBatcher(self._forward, max_batch=8, max_wait_s=0.0)

    def _forward(self, pairs: list[tuple[str, Any]]) -> list[float]:
        return [self.inner.score_sync(text, [doc])[0] for text, doc in pairs]

    async def load(self) -> None:
        return None

    async def score(self, query: Any, documents: Any, *args: Any, **kwargs: Any) -> list[float]:
        pairs = [(query.text, d) for d in documents]
        return list(await self.batcher.submit(pairs, [1] * len(pairs)))

    async def close(self) -> None:
        await self.batcher.close()


def test_batch_sizes_of_the_micro_batcher_reach_the_histogram(client_factory, minilm) -> None:
    client = client_factory(scorer=BatchedMiniLM(minilm))
    body = client.post("/search", json={"query": QUERY, "window": 20}).json()
    assert body["rerank_status"] == "ok" and body["cache"]["misses"] == 20
    samples = scrape(client)
    # 20 pairs under a budget of 8 per forward pass: 8 + 8 + 4
    assert value(samples, "sidecar_model_batch_size_count") == 3
    assert value(samples, "sidecar_model_batch_size_sum") == 20
    assert value(samples, "sidecar_model_batches_total") == 3
    assert value(samples, "sidecar_model_pairs_total") == 20
    assert value(samples, "sidecar_model_queue_depth") == 0
    assert value(samples, "sidecar_model_queue_wait_seconds_count") == 3
    assert value(samples, "sidecar_model_queue_wait_seconds_sum") > 0
    again = scrape(client)  # a second scrape does not count the same batches twice
    assert value(again, "sidecar_model_batch_size_count") == 3


def test_the_engine_compatible_endpoint_is_measured_like_search(client) -> None:
    response = client.post("/products/_search", json={"query": {"match": {"title": QUERY}}})
    assert response.status_code == 200
    samples = scrape(client)
    key = {"route": "/{index}/_search", "method": "POST", "status": "200"}
    assert value(samples, "sidecar_http_requests_total", **key) == 1
    assert value(samples, "sidecar_rerank_total", status="ok", reason="none") == 1
    assert value(samples, "sidecar_stage_duration_seconds_count", stage="model") == 1
