"""Scale-out as a tested property: replicas keep no state but their caches.

- Two sidecars sharing one real Redis: the second serves the first's pairs from the cache, and
  a replica whose model is still loading answers fully reranked from it.
- One sidecar using another, running as a separate `rerank-sidecar serve` process, as its
  `remote` scorer over real HTTP (POST /v1/rerank): same scores as the peer's own search.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from sidecar.app import create_app
from tests.conftest import make_settings
from tests.doubles import NeverReadyScorer
from tests.redis_server import free_port

pytestmark = pytest.mark.redis

QUERY = "waterproof hiking boots"


def scores_by_id(body: dict[str, Any]) -> dict[str, float]:
    return {h["id"]: h["model_score"] for h in body["hits"]}


def test_second_replica_is_served_from_the_first_ones_cache(
    client_factory, redis_url, minilm
) -> None:
    cache = {"kind": "redis", "redis_url": redis_url, "prefix": f"rr:scale-{uuid.uuid4().hex}:"}
    first, second = client_factory(cache=cache), client_factory(cache=cache)
    # lexical: a replica whose model is loading has no query vector, so its window would be
    # the lexical one; the same window on every replica is what this compares
    request = {"query": QUERY, "window": 40, "size": 20, "retrieval": "lexical"}

    a = first.post("/search", json=request).json()
    assert a["rerank_status"] == "ok" and a["window"] == 40
    assert a["cache"] == {"status": "ok", "hits": 0, "misses": 40}

    b = second.post("/search", json=request).json()
    assert b["cache"] == {"status": "ok", "hits": 40, "misses": 0}
    assert [h["id"] for h in b["hits"]] == [h["id"] for h in a["hits"]]
    assert scores_by_id(b) == scores_by_id(a)

    # A replica whose model is still loading answers fully reranked from the shared cache.
    loading = NeverReadyScorer(minilm.model_id, progress=0.1, score_identity=minilm.score_identity)
    cold = client_factory(scorer=loading, cache=cache)
    c = cold.post("/search", json=request).json()
    assert c["rerank_status"] == "ok" and c["cache"]["hits"] == 40
    assert scores_by_id(c) == scores_by_id(a)


class Peer:
    """A second sidecar as its own OS process (`rerank-sidecar serve`, embedded default)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "peer.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "RERANK_RULES__WATCH": "false"}
        with self.log_path.open("wb") as log_file:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sidecar.cli", "serve", "--port", str(self.port)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def wait_ready(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"peer exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"peer not ready: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def json_lines(self) -> list[dict[str, Any]]:
        text = self.log_path.read_text()
        return [json.loads(x) for x in text.splitlines() if x.startswith("{")]


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[Peer]:
    server = Peer(tmp_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_a_sidecar_scores_through_another_as_its_remote_scorer(peer: Peer, redis_url) -> None:
    settings = make_settings(
        scorer={"kind": "remote", "remote_url": peer.url, "remote_timeout_s": 30},
        cache={"kind": "redis", "redis_url": redis_url, "prefix": f"rr:remote-{uuid.uuid4().hex}:"},
    )
    # lexical: the remote scorer makes no vectors, so the front's window is the lexical one
    request = {
        "query": QUERY,
        "window": 30,
        "size": 10,
        "timeout_ms": 30_000,
        "retrieval": "lexical",
    }
    direct = httpx.post(f"{peer.url}/search", json=request, timeout=60).json()
    with TestClient(create_app(settings, wait_for_model=True)) as front:
        body = front.post("/search", json=request, headers={"X-Request-ID": "front-1"}).json()
        assert body["rerank_status"] == "ok", body["reason"]
        assert body["model"] == f"remote:{direct['model']}"
        assert body["cache"]["misses"] == 30
        # the peer's model scored the same pairs the peer scores for its own searches
        assert [h["id"] for h in body["hits"]] == [h["id"] for h in direct["hits"]]
        theirs = scores_by_id(direct)
        for hit_id, score in scores_by_id(body).items():
            assert score == pytest.approx(theirs[hit_id], abs=1e-5)
        assert 'route="/v1/rerank"' in httpx.get(f"{peer.url}/metrics", timeout=10).text

        # The peer goes away: the front still answers (engine order for uncached pairs), says
        # why, and counts it under a fixed reason label.
        peer.stop()
        lost = front.post("/search", json={"query": "espresso machine", "window": 20}).json()
        assert lost["rerank_status"] == "fallback" and "remote scorer" in lost["reason"]
        metrics = front.get("/metrics").text
        assert 'sidecar_rerank_total{reason="model_failed",status="fallback"} 1.0' in metrics

    # The peer process wrote JSON lines, one per request, each with its request id.
    served = [
        r for r in peer.json_lines() if r.get("msg") == "request" and r["route"] == "/v1/rerank"
    ]
    assert served and all(r["status"] == 200 for r in served)
    # the front's request id reached the peer; its own warm-up calls got generated ones
    assert [r["request_id"] for r in served].count("front-1") == 1
    assert all(len(r["request_id"]) == 32 for r in served if r["request_id"] != "front-1")
    assert QUERY not in peer.log_path.read_text()  # log_queries is off by default
