from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import RedisServer
from tests.vllm_server import VllmServer


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The shared real Redis: REDIS_URL from the test command, or one started here."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    server = RedisServer(Path(tmp_path_factory.mktemp("redis"))).start()
    yield server.url
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server this test alone owns, so it may stop and restart it."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


# Real Elasticsearch / OpenSearch: scripts/test starts each once per run and exports its URL.
ENGINE_URL_VARS = {"elasticsearch": "ES_URL", "opensearch": "OPENSEARCH_URL"}


@pytest.fixture(scope="session", params=sorted(ENGINE_URL_VARS))
def engine(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(kind, url) of a running engine with the demo catalog in `products`; every test that
    uses it runs once per engine."""
    from sidecar.backends.indexing import index_catalog
    from sidecar.config import EngineSettings
    from sidecar.demo import CATALOG_PATH, load_catalog

    kind: str = request.param
    url = os.environ.get(ENGINE_URL_VARS[kind])
    if not url:
        pytest.skip(
            f"{kind}: {ENGINE_URL_VARS[kind]} is not set (scripts/test starts the engine and "
            f"sets it; or: python -m es_integration.engines start {kind})"
        )
    import httpx

    count = httpx.get(f"{url}/products/_count", trust_env=False, timeout=10)
    if count.status_code != 200 or count.json()["count"] != len(load_catalog()):
        index_catalog(EngineSettings(urls=[url]), CATALOG_PATH, recreate=True, progress=False)
    return kind, url


# vLLM's CPU build serving the tiny Lychee by the printed recipe, once per session
# (tests/vllm_server.py); skipped, saying why, where the environment is not installed.
TINY_LYCHEE_PIXELS = ("--min-pixels", "3136", "--max-pixels", "50176")  # the tiny model's range


@pytest.fixture(scope="session")
def tiny_lychee_for_vllm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen2.5-VL laid out like Lychee, with the head size vLLM's CPU attention takes."""
    from tests.fixtures.tiny_qwen import build_tiny_qwen

    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-lychee-vllm"), head_dim=32)


@pytest.fixture(scope="session")
def vllm_lychee(
    tiny_lychee_for_vllm: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VllmServer]:
    from tests.vllm_server import serve, unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    server = serve(
        "lychee",
        tiny_lychee_for_vllm,
        tmp_path_factory.mktemp("vllm-state"),
        *TINY_LYCHEE_PIXELS,
        "--dtype",
        "float32",  # the in-process scorer's dtype on a CPU (vLLM's CPU default is float16)
    )
    try:
        yield server
    finally:
        server.stop()
