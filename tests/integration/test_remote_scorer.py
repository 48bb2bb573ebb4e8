"""The remote scorer against a real peer: a second sidecar (MiniLM) served by uvicorn on
127.0.0.1, whose /v1/rerank the first sidecar's `remote` scorer calls."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from sidecar.app import create_app
from sidecar.config import DEFAULT_INSTRUCTION
from sidecar.deadline import Deadline
from sidecar.documents import Document, make_document
from sidecar.errors import ScoringFailed
from sidecar.logs import request_id
from sidecar.query import Query
from sidecar.scoring.minilm import MiniLMScorer
from sidecar.scoring.remote import RemoteScorer
from tests.conftest import make_settings

DOCS = [
    "TrailPeak Ember 2-Person Tent for Camping, Waterproof, Two Doors",
    "Packwise Packing Cubes for Carry-On Suitcase, 4 Sizes",
    "ToeHold Hiking Boot Insoles, Arch Support Inserts",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Seen:
    """One /v1/rerank request as the peer received it."""

    body: dict[str, Any]
    request_id: str | None


class Recorder:
    """ASGI wrapper around the peer app: notes every /v1/rerank request it is sent (its JSON
    body and request id), then hands the request on unchanged."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[Seen] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/rerank":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        headers = dict(scope["headers"])
        rid = headers.get(b"x-request-id")
        self.seen.append(Seen(json.loads(body or b"null"), rid.decode() if rid else None))
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class Peer:
    """A sidecar in a uvicorn thread; `url` is its base URL, `seen` its /v1/rerank requests."""

    def __init__(self, scorer: MiniLMScorer) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The peer scores documents it has never seen (text as the caller cut it): give it time.
        # limits.max_rerank_documents stays at its default, 100.
        # Raw scores: the expected ones are the model's own (the default is calibrated).
        settings = make_settings(
            limits={"default_timeout_ms": 30_000}, scorer={"calibration": None}
        )
        self.recorder = Recorder(create_app(settings, wait_for_model=True, scorer=scorer))
        config = uvicorn.Config(
            self.recorder, host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def seen(self) -> list[Seen]:
        return self.recorder.seen

    def start(self) -> Peer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("peer sidecar did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def remote_app() -> Iterator[Any]:
    """Start sidecars whose scorer is `remote` (built from settings, so each app owns and
    closes its scorer); all are closed at the end."""
    opened: list[TestClient] = []

    def start(url: str, wait: bool = True, **scorer: Any) -> TestClient:
        settings = make_settings(
            scorer={"kind": "remote", "remote_url": url, "remote_timeout_s": 30.0, **scorer},
            limits={"default_timeout_ms": 30_000},
        )
        client = TestClient(create_app(settings, wait_for_model=wait))
        client.__enter__()
        opened.append(client)
        return client

    yield start
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture(scope="module")
def peer(minilm: MiniLMScorer) -> Iterator[Peer]:
    server = Peer(minilm).start()
    yield server
    server.stop()


def test_peer_serves_the_v1_rerank_shape(peer: Peer) -> None:
    answer = httpx.post(
        f"{peer.url}/v1/rerank",
        json={
            "model": "anything",
            "query": "camping tent",
            "documents": [DOCS[1], {"text": DOCS[0], "image": "images/p00002.png"}, DOCS[2]],
            "top_n": 2,
            "return_documents": True,
        },
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "all-MiniLM-L6-v2"
    assert body["results"][0]["index"] == 1  # the tent wins
    assert len(body["results"]) == 2
    assert body["results"][0]["document"] == {"text": DOCS[0], "image": "images/p00002.png"}
    assert body["results"][0]["relevance_score"] > body["results"][1]["relevance_score"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"query": "x", "documents": []}, "documents"),
        ({"query": "x", "documents": [{"image": "data:image/png;base64,AAAA"}]}, "documents.0"),
        ({"query": {"text": " "}, "documents": ["a"]}, "query"),
        ({"query": "x", "documents": ["a"], "top_n": 0}, "top_n"),
    ],
)
def test_peer_rejects_bad_requests_naming_the_field(
    peer: Peer, payload: dict[str, Any], field: str
) -> None:
    answer = httpx.post(f"{peer.url}/v1/rerank", json=payload)
    assert answer.status_code == 422
    assert answer.json()["field"] == field


def test_remote_scores_equal_the_peers(peer: Peer, remote_app: Any) -> None:
    client = remote_app(peer.url)
    request = {"query": "waterproof tent", "documents": DOCS}
    here = client.post("/api/rerank", json=request)
    there = httpx.post(f"{peer.url}/api/rerank", json=request)
    assert here.status_code == 200 and there.status_code == 200, here.text
    assert here.json()["model"] == "remote:all-MiniLM-L6-v2"
    mine = {r["index"]: r["score"] for r in here.json()["results"]}
    theirs = {r["index"]: r["score"] for r in there.json()["results"]}
    assert mine == pytest.approx(theirs, abs=1e-6)


def test_search_through_the_remote_scorer_matches_the_peer(peer: Peer, remote_app: Any) -> None:
    client = remote_app(peer.url)
    # lexical: the remote scorer makes no vectors, so this side's window is the lexical one
    request = {
        "query": "hiking boots",
        "size": 10,
        "window": 30,
        "timeout_ms": 30_000,
        "retrieval": "lexical",
    }
    here = client.post("/search", json=request).json()
    there = httpx.post(f"{peer.url}/search", json=request, timeout=30).json()
    assert here["rerank_status"] == "ok", here
    assert [h["id"] for h in here["hits"]] == [h["id"] for h in there["hits"]]


def catalog_documents(count: int) -> list[Document]:
    """`count` text documents from the demo catalog (text only: MiniLM reads no images)."""
    from sidecar.backends.base import Hit
    from sidecar.config import FieldMap
    from sidecar.demo import load_catalog
    from sidecar.documents import from_hit

    products = load_catalog()[:count]
    assert len(products) == count
    hits = [from_hit(Hit(p["id"], 0.0, p), FieldMap()) for p in products]
    return [make_document(d.id, d.title, d.selling_points) for d in hits]


async def test_a_window_over_the_peers_limit_is_split_and_scored_in_order(
    peer: Peer, minilm: MiniLMScorer
) -> None:
    documents = catalog_documents(150)
    query = Query("waterproof tent")
    scorer = RemoteScorer(peer.url, timeout_s=30.0)  # max_documents 100, the peer's limit
    peer.seen.clear()
    token = request_id.set("split-window-1")
    try:
        scores = await scorer.score(
            query, documents, DEFAULT_INSTRUCTION, deadline=Deadline.after(60)
        )
    finally:
        request_id.reset(token)
        await scorer.close()
    assert len(scores) == 150
    direct = await minilm.score(query, documents, DEFAULT_INSTRUCTION, deadline=Deadline.after(60))
    assert scores == pytest.approx(direct, abs=1e-6)
    assert sorted(len(s.body["documents"]) for s in peer.seen) == [50, 100]
    assert all(s.body["top_n"] == len(s.body["documents"]) for s in peer.seen)
    assert [s.request_id for s in peer.seen] == ["split-window-1"] * 2  # each chunk carries it


async def test_a_chunk_the_peer_refuses_is_an_error(peer: Peer) -> None:
    scorer = RemoteScorer(peer.url, timeout_s=30.0, max_documents=150)  # above the peer's 100
    try:
        with pytest.raises(ScoringFailed) as failed:
            await scorer.score(
                Query("tent"),
                catalog_documents(150),
                DEFAULT_INSTRUCTION,
                deadline=Deadline.after(60),
            )
    finally:
        await scorer.close()
    assert failed.value.details["status"] == 422
    assert "at most 100" in failed.value.message


@pytest.mark.parametrize(("timeout_s", "sent_ms"), [(5.0, 5000), (120.0, 30_000)])
async def test_the_scoring_budget_travels_as_timeout_ms(
    peer: Peer, timeout_s: float, sent_ms: int
) -> None:
    scorer = RemoteScorer(peer.url, timeout_s=timeout_s)
    peer.seen.clear()
    try:
        await scorer.score(
            Query("tent"), catalog_documents(3), DEFAULT_INSTRUCTION, deadline=Deadline.after(60)
        )
    finally:
        await scorer.close()
    assert [s.body["timeout_ms"] for s in peer.seen] == [sent_ms]


@pytest.mark.parametrize(("timeout_s", "sent_ms"), [(0.25, 250), (0.0001, 1), (30.0, 30_000)])
def test_the_http_call_outwaits_the_budget_it_sends(timeout_s: float, sent_ms: int) -> None:
    scorer = RemoteScorer("http://127.0.0.1:1", timeout_s=timeout_s)
    assert scorer.timeout_ms == sent_ms
    assert scorer.http_timeout_s > sent_ms / 1000


def test_the_settings_reach_the_remote_scorer(peer: Peer, remote_app: Any) -> None:
    client = remote_app(peer.url, remote_timeout_s=12.0, remote_max_documents=2)
    peer.seen.clear()
    # a request budget above the configured 12 s: the peer is sent what is left of the
    # request's deadline, at most remote_timeout_s
    body = {"query": "waterproof tent", "documents": DOCS, "timeout_ms": 30_000}
    answer = client.post("/api/rerank", json=body)
    assert answer.status_code == 200, answer.text
    assert sorted(len(s.body["documents"]) for s in peer.seen) == [1, 2]
    assert {s.body["timeout_ms"] for s in peer.seen} == {12_000}


def test_query_images_travel_as_data_uris(peer: Peer) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    scorer = RemoteScorer(peer.url)
    from sidecar.query import Query

    query = Query("tent", image_bytes=buffer.getvalue())
    sent = scorer._query(query)
    assert isinstance(sent, dict)
    assert sent["image"] == "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_a_peer_that_goes_away_degrades_search_to_engine_order(
    minilm: MiniLMScorer, remote_app: Any
) -> None:
    gone = Peer(minilm).start()
    client = remote_app(gone.url)
    assert client.post("/search", json={"query": "tent", "size": 3}).json()["rerank_status"] == "ok"
    gone.stop()
    body = client.post("/search", json={"query": "sleeping bag", "size": 3}).json()
    assert body["rerank_status"] == "fallback"
    assert "unreachable" in body["reason"], body["reason"]
    assert len(body["hits"]) == 3  # engine order, still an answer
    rerank = client.post("/api/rerank", json={"query": "tent", "documents": DOCS})
    assert rerank.status_code == 503 and "unreachable" in rerank.json()["message"]


def test_a_peer_not_up_yet_reads_as_loading(remote_app: Any) -> None:
    client = remote_app(f"http://127.0.0.1:{free_port()}", wait=False)
    body = client.post("/search", json={"query": "tent", "size": 3}).json()
    assert body["rerank_status"] == "fallback"
    assert "model not ready (loading: waiting for" in body["reason"]


async def test_load_waits_for_a_peer_that_is_not_up_yet(minilm: MiniLMScorer) -> None:
    port = free_port()
    scorer = RemoteScorer(f"http://127.0.0.1:{port}", retry_s=0.1)
    import asyncio

    load = asyncio.create_task(scorer.load())
    await asyncio.sleep(0.3)
    assert scorer.state.status == "loading" and "waiting for" in scorer.state.reason
    late = Peer(minilm)
    late.port, late.url = port, f"http://127.0.0.1:{port}"
    late.server.config.port = port
    await asyncio.to_thread(late.start)
    try:
        await asyncio.wait_for(load, 20)
        assert scorer.state.ready and scorer.model_id == "remote:all-MiniLM-L6-v2"
    finally:
        await asyncio.to_thread(late.stop)
        await scorer.close()


class ReadsImagesOnText:
    """The real MiniLM on the text, declared image-reading, so the peer loads (and flags)
    document images as a Lychee peer would."""

    reads_images = True

    def __init__(self, inner: MiniLMScorer) -> None:
        self.inner, self.model_id, self.state = inner, inner.model_id, inner.state
        self.score_identity = inner.score_identity + "+images"

    async def load(self) -> None:
        return None

    async def score(
        self, query: Any, documents: Any, instruction: str, images: Any = None, *, deadline: Any
    ) -> Any:
        return await self.inner.score(query, documents, instruction, deadline=deadline)

    async def close(self) -> None:
        return None


async def test_the_peers_flags_come_back_and_keep_text_only_scores_out_of_the_cache(
    minilm: MiniLMScorer,
) -> None:
    from sidecar.cache.memory import MemoryCache
    from sidecar.documents import make_document
    from sidecar.scoring_service import ScoringService

    image_peer = Peer(minilm)
    image_peer.recorder.app = create_app(
        make_settings(limits={"default_timeout_ms": 30_000}, scorer={"calibration": None}),
        wait_for_model=True,
        scorer=ReadsImagesOnText(minilm),
    )
    image_peer.start()
    scorer = RemoteScorer(image_peer.url, timeout_s=30.0)
    cache = MemoryCache()
    front = ScoringService(scorer, cache)
    docs = [
        make_document("ok", DOCS[0]),
        # a private address: the peer refuses to fetch it and scores the text alone
        make_document("private", DOCS[1], image_urls=["http://10.1.2.3/bag.png"]),
    ]
    try:
        await scorer.load()
        report = await front.score(Query("tent"), docs, DEFAULT_INSTRUCTION, Deadline.after(30))
        again = await front.score(Query("tent"), docs, DEFAULT_INSTRUCTION, Deadline.after(30))
    finally:
        await scorer.close()
        image_peer.stop()
    assert report.status == "ok" and all(s is not None for s in report.scores)
    assert 1 in report.flags and report.flags[1][0].startswith("peer: image_failed")
    assert 0 not in report.flags
    assert again.cache_hits == 1 and again.cache_misses == 1  # the flagged score was not cached


async def test_the_remote_scorer_reads_what_its_peer_says_it_reads(peer: Peer) -> None:
    told = RemoteScorer(peer.url, timeout_s=30.0)
    configured = RemoteScorer(peer.url, timeout_s=30.0, languages=["en", "zh"])
    try:
        assert told.languages == ("*",)  # nothing known before the peer answers
        await told.load()
        await configured.load()
    finally:
        await told.close()
        await configured.close()
    assert told.languages == ("en",)  # the peer runs the CPU default
    assert configured.languages == ("en", "zh")  # the operator's word wins
