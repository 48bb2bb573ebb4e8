"""`rerank-sidecar index --embed` fills the shared document embeddings ahead of traffic: a second
run finds every product already shared, and a fresh sidecar on that Redis and engine reranks its
first search without encoding one product. Real engine, real Redis, the real command."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient

from sidecar.app import create_app
from sidecar.cli.index import index_command
from sidecar.demo import CATALOG_PATH
from tests.conftest import make_settings
from tests.integration.test_engines import engine_config

pytestmark = [pytest.mark.engine, pytest.mark.redis]


def test_index_embed_shares_every_product_once(
    engine: tuple[str, str], redis_url: str, tmp_path: Path
) -> None:
    kind, url = engine
    catalog = tmp_path / "catalog.jsonl"
    with CATALOG_PATH.open(encoding="utf-8") as lines:
        catalog.write_text("".join(itertools.islice(lines, 40)), encoding="utf-8")
    index = f"embed-{uuid.uuid4().hex[:8]}"
    cache = {"kind": "redis", "redis_url": redis_url, "prefix": f"rr:{index}:"}
    engine_settings = engine_config(kind, url, default_index=index)
    config = tmp_path / "sidecar.yaml"
    config.write_text(yaml.safe_dump({"engine": engine_settings, "cache": cache}))
    command = ["--config", str(config), "--catalog", str(catalog), "--no-progress"]

    first = CliRunner().invoke(index_command, [*command, "--recreate", "--embed"])
    assert first.exit_code == 0, first.output
    assert "embeddings: 40 encoded, 0 already shared, of 40 products" in first.output
    again = CliRunner().invoke(index_command, [*command, "--embed"])
    assert again.exit_code == 0, again.output
    assert "embeddings: 0 encoded, 40 already shared, of 40 products" in again.output

    settings = make_settings(engine=engine_settings, cache=cache)
    with TestClient(create_app(settings, wait_for_model=True)) as replica:
        body: dict[str, Any] = replica.post(
            "/search", json={"query": "waterproof hiking boots", "index": index}
        ).json()
        scorer = replica.app.state.services.scorer  # type: ignore[attr-defined]
        assert body["rerank_status"] == "ok" and body["window"] > 0
        assert scorer.encoded_documents == 0
    httpx_delete(url, index)


def httpx_delete(url: str, index: str) -> None:
    import httpx

    httpx.delete(f"{url}/{index}", trust_env=False, timeout=30)
