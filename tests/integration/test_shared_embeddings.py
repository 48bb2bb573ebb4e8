"""Document embeddings are shared by replicas through Redis: a second sidecar started on the same
Redis serves its first search on products another replica encoded without encoding any of them.

Each replica here loads its own MiniLM (not the shared test model), as two pods would."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sidecar.app import create_app
from tests.conftest import make_settings

pytestmark = pytest.mark.redis


def replica(redis_url: str, prefix: str) -> TestClient:
    settings = make_settings(cache={"kind": "redis", "redis_url": redis_url, "prefix": prefix})
    client = TestClient(create_app(settings, wait_for_model=True))
    client.__enter__()
    return client


def warmed(client: TestClient) -> None:
    """Wait (bounded) until the replica's catalog warm-up is done."""
    for _ in range(600):
        if client.get("/readyz").json()["model"]["warmup"].get("state") == "done":
            return
        time.sleep(0.2)
    raise AssertionError("catalog warm-up did not finish")


def scorer_of(client: TestClient) -> Any:
    return client.app.state.services.scorer  # type: ignore[attr-defined]


def test_a_new_replica_reads_the_embeddings_another_encoded(redis_url: str) -> None:
    prefix = f"rr:emb-{uuid.uuid4().hex}:"
    first = replica(redis_url, prefix)
    try:
        warmed(first)
        a = scorer_of(first)
        assert a.encoded_documents >= 900  # the demo catalog, encoded here once
        answer = first.post("/search", json={"query": "waterproof hiking boots"}).json()
        assert answer["rerank_status"] == "ok"
    finally:
        first.__exit__(None, None, None)  # closing drains the shared writes
    assert a.shared.written >= 900

    second = replica(redis_url, prefix)
    try:
        warmed(second)
        b = scorer_of(second)
        # a query neither replica has seen: no pair score is cached, every product is known
        body = second.post("/search", json={"query": "trail running shoes", "window": 50}).json()
        assert body["rerank_status"] == "ok" and body["cache"]["hits"] == 0
        assert b.encoded_documents == 0
        assert b.shared.read >= 900
        metrics = second.get("/metrics").text  # what the on-call engineer sees
        assert 'sidecar_shared_embeddings_total{result="read"}' in metrics
        assert "sidecar_documents_encoded_total 0.0" in metrics
    finally:
        second.__exit__(None, None, None)
