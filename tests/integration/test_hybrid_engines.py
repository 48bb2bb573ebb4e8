"""The hybrid first stage on real Elasticsearch and OpenSearch: `index --vectors` writes the
products' vectors (dense_vector / knn_vector), a need-style query finds waterproof footwear the
lexical window lacks, filters hold inside the k-NN leg, and an index without the vector field
stays lexical and says why. The tests index their own index with the real command."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient

from sidecar.app import create_app
from sidecar.cli.index import index_command
from sidecar.scoring.minilm import MiniLMScorer
from tests.conftest import make_settings
from tests.integration.test_engines import engine_config

pytestmark = pytest.mark.engine

NEED = "shoes that don't let puddles in"  # lexical: "shoes", "let", "in"


def waterproof_footwear(hit: dict[str, Any]) -> bool:
    title = str(hit["source"]["title"]).lower()
    return "waterproof" in title and ("boot" in title or "shoe" in title)


def settings_file(path: Path, kind: str, url: str, index: str, **more: Any) -> Path:
    """A sidecar settings file for `index` on the engine, with `more` sections beside it."""
    path.write_text(
        yaml.safe_dump({"engine": engine_config(kind, url, default_index=index), **more})
    )
    return path


REMOTE = {"kind": "remote", "remote_url": "http://127.0.0.1:9"}  # a scorer without vectors


@pytest.fixture(scope="module")
def vectored(
    engine: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, str]]:
    """(kind, url, index) of the demo catalog indexed with its vectors by `index --vectors`."""
    kind, url = engine
    index = f"hybrid-{uuid.uuid4().hex[:8]}"
    config = settings_file(tmp_path_factory.mktemp("hybrid") / "sidecar.yaml", kind, url, index)
    done = CliRunner().invoke(
        index_command, ["--config", str(config), "--recreate", "--no-progress", "--vectors"]
    )
    assert done.exit_code == 0, done.output
    mapping = httpx.get(f"{url}/{index}/_mapping", trust_env=False, timeout=30).json()
    field = mapping[index]["mappings"]["properties"]["embedding"]
    assert field["type"] == ("knn_vector" if kind == "opensearch" else "dense_vector")
    yield kind, url, index
    httpx.delete(f"{url}/{index}", trust_env=False, timeout=30)


@pytest.fixture
def hybrid(
    vectored: tuple[str, str, str], minilm: MiniLMScorer
) -> Iterator[tuple[TestClient, str]]:
    kind, url, index = vectored
    settings = make_settings(
        engine=engine_config(kind, url, default_index=index), hybrid={"enabled": True}
    )
    with TestClient(create_app(settings, wait_for_model=True, scorer=minilm)) as client:
        yield client, index


def search(client: TestClient, index: str, **body: Any) -> dict[str, Any]:
    answer = client.post(
        "/search", json={"index": index, "window": 10, "size": 10, "explain": True, **body}
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_a_need_finds_what_the_lexical_window_lacks(hybrid: tuple[TestClient, str]) -> None:
    client, index = hybrid
    assert client.get("/readyz").json()["hybrid"]["status"] == "available"
    lexical = search(client, index, query=NEED, retrieval="lexical")
    fused = search(client, index, query=NEED)
    assert fused["retrieval"] == {"mode": "hybrid", "reason": ""}
    assert sum(map(waterproof_footwear, lexical["hits"])) == 0
    found = [h for h in fused["hits"] if waterproof_footwear(h)]
    assert len(found) >= 3
    assert any(set(h["explain"]["retrieval"]) == {"vector"} for h in found)


def test_filters_hold_inside_the_vector_leg(hybrid: tuple[TestClient, str]) -> None:
    client, index = hybrid
    body = search(
        client, index, query=NEED, window=40, size=40, filters={"range": {"price": {"lte": 30}}}
    )
    assert body["retrieval"]["mode"] == "hybrid"
    assert body["hits"] and all(h["source"]["price"] <= 30 for h in body["hits"])
    assert any(set(h["explain"]["retrieval"]) == {"vector"} for h in body["hits"])


def test_an_index_without_vectors_stays_lexical(
    engine: tuple[str, str], minilm: MiniLMScorer
) -> None:
    kind, url = engine  # `products`: the demo loaded without vectors
    settings = make_settings(engine=engine_config(kind, url), hybrid={"enabled": True})
    with TestClient(create_app(settings, wait_for_model=True, scorer=minilm)) as client:
        ready = client.get("/readyz").json()["hybrid"]["status"]
        assert ready.startswith("unavailable: index 'products' has no vector field 'embedding'")
        body = search(client, "products", query=NEED)
        assert body["retrieval"]["mode"] == "lexical"
        assert "no vector field" in body["retrieval"]["reason"]
        assert body["hits"]


def test_the_vectors_command_refuses_a_scorer_without_vectors(
    engine: tuple[str, str], tmp_path: Path
) -> None:
    kind, url = engine
    config = settings_file(tmp_path / "sidecar.yaml", kind, url, "never-made", scorer=REMOTE)
    done = CliRunner().invoke(index_command, ["--config", str(config), "--vectors"])
    assert done.exit_code != 0
    assert "--vectors needs a scorer that makes vectors" in done.output


def test_index_writes_vectors_by_default_and_goes_lexical_where_the_scorer_has_none(
    engine: tuple[str, str], tmp_path: Path
) -> None:
    kind, url = engine
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(
        '{"id": "1", "title": "Waterproof hiking boots"}\n{"id": "2", "title": "Wool socks"}\n'
    )
    index = f"default-{uuid.uuid4().hex[:8]}"
    config = settings_file(tmp_path / "sidecar.yaml", kind, url, index)
    args = ["--config", str(config), "--catalog", str(catalog), "--no-progress"]
    try:
        done = CliRunner().invoke(index_command, [*args, "--recreate"])  # hybrid is on
        assert done.exit_code == 0, done.output
        mapping = httpx.get(f"{url}/{index}/_mapping", trust_env=False, timeout=30).json()
        assert "embedding" in mapping[index]["mappings"]["properties"]

        remote = settings_file(
            tmp_path / "remote.yaml", kind, url, f"{index}-lexical", scorer=REMOTE
        )
        lexical = CliRunner().invoke(
            index_command, ["--config", str(remote), "--catalog", str(catalog), "--no-progress"]
        )
        assert lexical.exit_code == 0, lexical.output
        assert "no vectors written (the index is lexical only)" in lexical.output
    finally:
        for name in (index, f"{index}-lexical"):
            httpx.delete(f"{url}/{name}", trust_env=False, timeout=30)


def test_vectors_are_never_poured_into_an_index_without_the_field(
    engine: tuple[str, str], tmp_path: Path
) -> None:
    kind, url = engine
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text('{"id": "1", "title": "Waterproof hiking boots"}\n')
    index = f"bare-{uuid.uuid4().hex[:8]}"
    config = settings_file(tmp_path / "sidecar.yaml", kind, url, index)
    args = ["--config", str(config), "--catalog", str(catalog), "--no-progress"]
    try:
        made = CliRunner().invoke(index_command, [*args, "--no-vectors"])
        assert made.exit_code == 0, made.output
        asked = CliRunner().invoke(index_command, [*args, "--vectors"])
        assert asked.exit_code != 0
        assert "has no vector field 'embedding'" in asked.output
        assert "--recreate makes it with the field" in asked.output
        implicit = CliRunner().invoke(index_command, args)  # hybrid on: vectors if they fit
        assert implicit.exit_code == 0, implicit.output
        assert "no vectors written" in implicit.output
        mapping = httpx.get(f"{url}/{index}/_mapping", trust_env=False, timeout=30).json()
        assert "embedding" not in mapping[index]["mappings"].get("properties", {})
    finally:
        httpx.delete(f"{url}/{index}", trust_env=False, timeout=30)
