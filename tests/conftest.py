"""Shared fixtures. The MiniLM model is loaded once per test session and shared by every app."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sidecar.app import create_app
from sidecar.config import Settings
from sidecar.scoring.minilm import MiniLMScorer

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def minilm() -> MiniLMScorer:
    scorer = MiniLMScorer()
    asyncio.run(scorer.load())
    assert scorer.state.ready, scorer.state.reason
    # Encode the demo catalog once for the whole session, as the app does at start-up.
    from sidecar.backends.base import Hit
    from sidecar.config import FieldMap
    from sidecar.demo import load_catalog
    from sidecar.documents import from_hit

    scorer.warm_documents([from_hit(Hit(p["id"], 0.0, p), FieldMap()) for p in load_catalog()])
    return scorer


def make_settings(**overrides: Any) -> Settings:
    """Settings for tests: the embedded default, no file watching unless asked."""
    overrides.setdefault("rules", {"watch": False})
    # Tests search many indices (unknown ones included, for 404s); the allowlist has tests of
    # its own (tests/integration/test_index_allowlist.py).
    engine = overrides.setdefault("engine", {})
    if isinstance(engine, dict):
        engine.setdefault("allowed_indices", ["*"])
    return Settings(**overrides)


@pytest.fixture
def client_factory(minilm: MiniLMScorer) -> Iterator[Any]:
    """Start apps with given settings (sharing the loaded model); all are closed at the end."""
    opened: list[TestClient] = []

    def start(scorer: Any = None, **overrides: Any) -> TestClient:
        app = create_app(make_settings(**overrides), wait_for_model=True, scorer=scorer or minilm)
        client = TestClient(app)
        client.__enter__()
        opened.append(client)
        return client

    yield start
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(client_factory: Any) -> TestClient:
    return client_factory()
