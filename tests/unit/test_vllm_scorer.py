"""The vLLM scorer's own parts: data: URLs, the score identity, settings and wiring; and the
failures a real vLLM cannot be made to give on demand (429, a 500, a malformed or out-of-range
answer, a stalled server), against a small real HTTP server that answers in vLLM's documented
`/v1/rerank` shape. Its behaviour with a real vLLM (scores, order, outage and recovery, a
different served model) is tests/integration/test_vllm_scorer.py."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image

from sidecar.config import Settings
from sidecar.deadline import Deadline
from sidecar.documents import make_document
from sidecar.errors import ConfigError, Overloaded, ScoringFailed, status_for
from sidecar.query import Query
from sidecar.scoring.base import CallsModelServer, identity_of
from sidecar.scoring.vllm import VllmScorer, png_data_url
from sidecar.wiring import build_scorer
from tests.live_server import serve_in_thread

DOCS = [make_document(f"d{i}", f"product number {i}") for i in range(7)]


class StandIn:
    """A stand-in vLLM: /health, /v1/models, and /v1/rerank answering what `mode` says.
    Used only for failures a real vLLM cannot be made to give on demand."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls: list[dict[str, Any]] = []
        self.release = threading.Event()
        app = FastAPI()

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {}

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": "tiny", "root": "/models/tiny"}]}

        @app.post("/v1/rerank")
        async def rerank(request: Request) -> Any:
            body = await request.json()
            self.calls.append(body)
            docs = body["documents"]
            if self.mode == "429" and body["query"] != "warm-up":
                return JSONResponse({"error": {"message": "queue full"}}, status_code=429)
            if self.mode == "500" and body["query"] != "warm-up":
                return JSONResponse({"error": {"message": "engine dead"}}, status_code=500)
            if self.mode.startswith("503") and body["query"] != "warm-up":
                self.mode = "ok" if self.mode == "503-once" else self.mode
                miss = {"error": {"message": "Multi-modal processor cache miss.", "code": 503}}
                return JSONResponse(miss, status_code=503)
            if self.mode == "400" and body["query"] != "warm-up":
                return JSONResponse({"error": {"message": "prompt too long"}}, status_code=400)
            if self.mode == "stall" and body["query"] != "warm-up":
                await asyncio.to_thread(self.release.wait, 5)
            score = 1.5 if self.mode == "range" and body["query"] != "warm-up" else 0.5
            results = [
                {"index": i, "relevance_score": score, "document": {"text": None}}
                for i in range(len(docs))
            ]
            if self.mode == "missing" and body["query"] != "warm-up":
                results = results[1:]
            return {"id": "x", "model": "tiny", "usage": {}, "results": results}

        self.app = app


@pytest.fixture
def stand_in() -> Iterator[tuple[StandIn, str]]:
    server = StandIn()
    url, uv, thread = serve_in_thread(server.app, 10)
    try:
        yield server, url
    finally:
        server.release.set()
        uv.should_exit = True
        thread.join(5)


async def loaded(url: str, **kwargs: Any) -> VllmScorer:
    scorer = VllmScorer(url, retry_s=0.05, **kwargs)
    await asyncio.wait_for(scorer.load(), 10)
    assert scorer.state.ready, scorer.state.reason
    return scorer


def test_png_data_url_round_trips_the_pixels() -> None:
    picture = Image.new("RGB", (31, 17), (12, 200, 99))
    picture.putpixel((3, 4), (1, 2, 3))
    url = png_data_url(picture)
    assert url.startswith("data:image/png;base64,")
    back = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert back.format == "PNG" and back.mode == "RGB"
    assert back.tobytes() == picture.tobytes()  # lossless: the same pixels
    # an image with alpha is sent as the RGB the in-process scorer reads
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 128))
    back = Image.open(io.BytesIO(base64.b64decode(png_data_url(rgba).split(",", 1)[1])))
    assert back.mode == "RGB" and back.getpixel((0, 0)) == (10, 20, 30)


async def test_data_urls_are_encoded_once_per_image_object() -> None:
    scorer = VllmScorer("http://127.0.0.1:9")
    picture = Image.new("RGB", (8, 8), (1, 1, 1))
    first = await scorer.data_url(picture)
    assert await scorer.data_url(picture) is first  # reused, not encoded again
    other = Image.new("RGB", (8, 8), (2, 2, 2))
    assert await scorer.data_url(other) != first


def test_identity_names_family_served_model_root_template_and_limits() -> None:
    base = VllmScorer("http://h:1", model="a")
    same = VllmScorer("http://other-host:2", model="a")
    assert base.score_identity == same.score_identity  # where it runs is no part of it
    assert VllmScorer("http://h:1", model="b").score_identity != base.score_identity
    family = VllmScorer("http://h:1", model="a", family="cross-encoder")
    assert family.score_identity != base.score_identity
    template = VllmScorer("http://h:1", model="a", template_hash="sha256:other")
    assert template.score_identity != base.score_identity
    pixels = VllmScorer("http://h:1", model="a", max_pixels=64 * 28 * 28)
    assert pixels.score_identity != base.score_identity and pixels.model_id != base.model_id
    chars = VllmScorer("http://h:1", model="a", max_doc_chars=100)
    assert chars.score_identity != base.score_identity
    # the root the server reports (the weights it loaded) changes it too
    rooted = VllmScorer("http://h:1", model="a")
    rooted.served = {"id": "a", "root": "/models/v2"}
    assert rooted._identity() != base.score_identity


def test_families_say_what_they_read() -> None:
    assert VllmScorer("http://h:1").reads_images is True
    cross = VllmScorer("http://h:1", family="cross-encoder")
    assert cross.reads_images is False and cross.languages == ("en",)
    with pytest.raises(ValueError, match="family"):
        VllmScorer("http://h:1", family="qwen3-reranker")


def test_wiring_builds_it_from_settings() -> None:
    settings = Settings(
        scorer={
            "kind": "vllm",
            "url": "http://127.0.0.1:8000/",
            "model": "lychee",
            "call_size": 8,
            "concurrency": 3,
        }
    )
    scorer = build_scorer(settings)
    assert isinstance(scorer, VllmScorer) and isinstance(scorer, CallsModelServer)
    assert (scorer.base, scorer.model, scorer.call_size, scorer.concurrency) == (
        "http://127.0.0.1:8000",
        "lychee",
        8,
        3,
    )
    with pytest.raises(ConfigError, match=r"scorer\.url"):
        build_scorer(Settings(scorer={"kind": "vllm"}))


async def test_load_waits_for_the_server_and_says_why() -> None:
    scorer = VllmScorer("http://127.0.0.1:9", retry_s=0.05)  # nothing listens on port 9
    task = asyncio.create_task(scorer.load())
    await asyncio.sleep(0.3)
    assert scorer.state.status == "loading"
    assert "waiting for http://127.0.0.1:9" in scorer.state.reason
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await scorer.close()


async def test_a_model_the_server_does_not_serve_is_a_failed_state(
    stand_in: tuple[StandIn, str],
) -> None:
    _, url = stand_in
    scorer = VllmScorer(url, model="not-served", retry_s=0.05)
    await asyncio.wait_for(scorer.load(), 10)
    assert scorer.state.status == "failed"
    assert "['tiny']" in scorer.state.reason and "not-served" in scorer.state.reason
    await scorer.close()


async def test_429_is_overloaded_and_does_not_open_the_breaker(
    stand_in: tuple[StandIn, str],
) -> None:
    """Stand-in: vLLM has no queue limit to fill on demand."""
    server, url = stand_in
    scorer = await loaded(url, breaker_failures=1)
    server.mode = "429"
    with pytest.raises(Overloaded) as caught:
        await scorer.score(Query("q"), DOCS, "i", deadline=Deadline.after(2))
    assert status_for(caught.value) == 429
    assert scorer.breaker.state == "closed"  # busy is not down
    assert scorer.server_stats()["overloaded"] == 1
    await scorer.close()


async def test_a_500_fails_and_opens_the_breaker_then_a_probe_closes_it(
    stand_in: tuple[StandIn, str],
) -> None:
    """Stand-in: a 500 from a live vLLM cannot be caused on demand (the outage of a killed
    server is the integration test's)."""
    server, url = stand_in
    scorer = await loaded(url, breaker_failures=2, breaker_cooldown_s=0.3)
    server.mode = "500"
    for _ in range(2):
        with pytest.raises(ScoringFailed, match="answered 500: engine dead") as caught:
            await scorer.score(Query("q"), DOCS, "i", deadline=Deadline.after(2))
        assert status_for(caught.value) == 503
    assert scorer.breaker.state == "open"
    calls = len(server.calls)
    with pytest.raises(ScoringFailed, match="circuit open"):
        await scorer.score(Query("q"), DOCS, "i", deadline=Deadline.after(2))
    assert len(server.calls) == calls  # refused at once, the server not asked
    assert scorer.state.detail is not None and scorer.state.detail["breaker"] == "open"
    server.mode = "ok"
    await asyncio.sleep(0.35)
    assert await scorer.score(Query("q"), DOCS, "i", deadline=Deadline.after(2)) == [0.5] * 7
    assert scorer.breaker.state == "closed"
    stats = scorer.server_stats()
    assert (stats["failed"], stats["refused"], stats["ok"]) == (2, 1, 1)
    await scorer.close()


async def test_a_retryable_503_is_sent_once_more_within_the_deadline(
    stand_in: tuple[StandIn, str],
) -> None:
    """Stand-in: vLLM marks its multimodal processor cache miss retryable and answers 503 (it
    resends the images' data next time); the drift behind it cannot be caused on demand."""
    server, url = stand_in
    scorer = await loaded(url, call_size=100)
    server.mode, before = "503-once", len(server.calls)
    assert await scorer.score(Query("q"), DOCS, "i", deadline=Deadline.after(2)) == [0.5] * 7
    assert len(server.calls) == before + 2
    server.mode, before = "503", len(server.calls)  # a 503 again: once more, no more
    with pytest.raises(ScoringFailed, match="answered 503: Multi-modal processor cache miss"):
        await scorer.score(Query("q"), DOCS, "i", deadline=Deadline.after(2))
    assert len(server.calls) == before + 2
    await scorer.close()


async def test_a_refused_request_does_not_open_the_breaker(stand_in: tuple[StandIn, str]) -> None:
    """Stand-in: a 400 for one request is the server refusing it, not an outage."""
    server, url = stand_in
    scorer = await loaded(url, breaker_failures=1)
    server.mode = "400"
    with pytest.raises(ScoringFailed, match="answered 400: prompt too long"):
        await scorer.score(Query("q"), DOCS, "i", deadline=Deadline.after(2))
    assert scorer.breaker.state == "closed"
    await scorer.close()


@pytest.mark.parametrize(
    ("mode", "message"), [("range", "outside"), ("missing", "left out documents")]
)
async def test_a_malformed_answer_fails(
    stand_in: tuple[StandIn, str], mode: str, message: str
) -> None:
    """Stand-in: a real vLLM answers well-formed results."""
    server, url = stand_in
    scorer = await loaded(url)
    server.mode = mode
    with pytest.raises(ScoringFailed, match=message):
        await scorer.score(Query("q"), DOCS, "i", deadline=Deadline.after(2))
    await scorer.close()


async def test_a_stalled_server_is_cut_at_the_deadline(stand_in: tuple[StandIn, str]) -> None:
    """Stand-in: a server that holds one call while answering /health (the slowed real vLLM
    is the integration test's, through tests/slow_proxy.py)."""
    server, url = stand_in
    scorer = await loaded(url, call_size=3)
    server.mode = "stall"
    started = asyncio.get_running_loop().time()
    with pytest.raises(ScoringFailed, match="did not answer within"):
        await scorer.score(Query("q"), DOCS, "i", deadline=Deadline.after(0.3))
    assert asyncio.get_running_loop().time() - started < 0.45
    assert len(server.calls) == 1 + 3  # the warm-up, then the window in calls of 3
    server.release.set()
    await scorer.close()


async def test_calls_carry_the_instruction_only_for_lychee(stand_in: tuple[StandIn, str]) -> None:
    """Stand-in: records the request bodies (what the real vLLM makes of them is tested in
    the integration tests)."""
    server, url = stand_in
    for family, expected in (("lychee", "judge this"), ("cross-encoder", None)):
        scorer = await loaded(url, family=family)
        server.calls.clear()
        await scorer.score(Query("q"), DOCS[:1], "judge this", deadline=Deadline.after(2))
        assert server.calls[0].get("instruction") == expected
        assert server.calls[0]["model"] == "tiny"  # the served name learned at load
        await scorer.close()


def test_identity_of_a_loaded_scorer_is_its_score_identity() -> None:
    scorer = VllmScorer("http://h:1", model="a")
    assert identity_of(scorer) == scorer.score_identity
