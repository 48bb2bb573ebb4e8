"""The remote scorer against a real peer: a second sidecar (MiniLM) served by uvicorn on
127.0.0.1, whose /v1/rerank the first sidecar's `remote` scorer calls."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from sidecar.app import create_app
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


class Peer:
    """A sidecar in a uvicorn thread; `url` is its base URL."""

    def __init__(self, scorer: MiniLMScorer) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The peer scores documents it has never seen (text as the caller cut it): give it time.
        settings = make_settings(limits={"default_timeout_ms": 30_000})
        app = create_app(settings, wait_for_model=True, scorer=scorer)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

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

    def start(url: str, wait: bool = True) -> TestClient:
        settings = make_settings(
            scorer={"kind": "remote", "remote_url": url, "remote_timeout_s": 30.0},
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
    request = {"query": "hiking boots", "size": 10, "window": 30, "timeout_ms": 30_000}
    here = client.post("/search", json=request).json()
    there = httpx.post(f"{peer.url}/search", json=request, timeout=30).json()
    assert here["rerank_status"] == "ok", here
    assert [h["id"] for h in here["hits"]] == [h["id"] for h in there["hits"]]


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
