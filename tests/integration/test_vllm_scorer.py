"""`scorer.kind: vllm` against a real vLLM (the CPU build in its cached environment) serving a
tiny random Qwen2.5-VL laid out like Lychee, started with the project's recipe
(`sidecar.scoring.vllm_recipe`) by `model_servers.vllm_cpu`: the sidecar's scores through vLLM
equal the in-process `lychee` scorer's on the same weights (text and images), a window above the
call size comes back whole and in order, another served model is a cache miss, a slowed vLLM
degrades within the deadline, and a killed one falls back at once and is used again, without a
restart, when it comes back.

Skipped with the reason when vLLM's environment is not installed (`python -m model_servers
install`) or this tree lacks the recipe parts."""

from __future__ import annotations

import base64
import io
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from model_servers import vllm_cpu
from model_servers.install import installed
from sidecar.app import create_app
from sidecar.cache.memory import MemoryCache
from sidecar.deadline import Deadline
from sidecar.demo import DEMO_DIR
from sidecar.documents import make_document
from sidecar.query import Query
from sidecar.scoring.vllm import VllmScorer
from sidecar.scoring.vllm_recipe import recipe
from sidecar.scoring_service import ScoringService
from tests.conftest import make_settings
from tests.slow_proxy import SlowProxy

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.slow,
    # model_servers.vllm_cpu.start lets go of its Popen while the server runs (stop() ends it by
    # its process group), so the Popen's finalizer warns
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

PIXELS = 64 * 28 * 28  # small images: the tiny model on 2 cores
NAMES = ("tiny-a", "tiny-b")  # one server, two served names: the cache-miss test's two models
SERVER = "vllm-client-test"
# Text pairs: vLLM's classifier over the same fp32 weights as the in-process forward pass, with
# other attention and matmul kernels: up to 3.2e-5 apart here (2 cores, vLLM-CPU 0.32.0); 1e-4
# holds that with room and still tells the pairs apart. Image pairs: identical pixels and prompt
# token ids, yet ~1e-3 apart (vLLM's vision path differs in its kernels); 5e-3 holds that.
TEXT_TOLERANCE = 1e-4
IMAGE_TOLERANCE = 5e-3


@dataclass
class Served:
    url: str
    port: int
    model: Path
    args: list[str]
    state: Path
    images: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not os.environ.get("VLLM_PYTHON") and not installed():
        pytest.skip("vLLM's CPU environment is not installed (python -m model_servers install)")
    from tests.fixtures.tiny_qwen import build_tiny_qwen

    # vLLM's CPU attention refuses head_dim 16: the served weights use 32
    model = build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen-32"), head_dim=32)
    args = [*recipe("lychee", max_pixels=PIXELS).args, "--served-model-name", *NAMES]
    state = tmp_path_factory.mktemp("vllm-state")
    info = vllm_cpu.start(
        str(model), args, name=SERVER, state_dir=state, served_model_name=NAMES[0]
    )
    images = tmp_path_factory.mktemp("images")
    (images / "images").mkdir()
    for name in ("p00001.png", "p00002.png", "p00003.png"):
        shutil.copy(DEMO_DIR / "images" / name, images / "images" / name)
    url = str(info["url"])
    try:
        yield Served(url, int(url.rsplit(":", 1)[1]), model, args, state, images)
    finally:
        vllm_cpu.stop(SERVER, state)


def app_for(served: Served, **scorer: Any) -> TestClient:
    settings = make_settings(
        scorer={"kind": "vllm", "url": served.url, "model": NAMES[0], "max_pixels": PIXELS}
        | scorer,
        images={"local_root": str(served.images)},
    )
    return TestClient(create_app(settings, wait_for_model=True))


@pytest.fixture(scope="module")
def through_vllm(served: Served) -> Iterator[TestClient]:
    with app_for(served, call_size=2) as client:
        yield client


@pytest.fixture(scope="module")
def in_process(served: Served) -> Iterator[TestClient]:
    settings = make_settings(
        scorer={"kind": "lychee", "model_path": str(served.model), "max_pixels": PIXELS},
        images={"local_root": str(served.images)},
    )
    with TestClient(create_app(settings, wait_for_model=True)) as client:
        yield client


def png_base64(color: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def scores(client: TestClient, query: object, documents: list[object]) -> list[float]:
    answer = client.post("/api/rerank", json={"query": query, "documents": documents})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    by_index = {r["index"]: r["score"] for r in body["results"]}
    return [by_index[i] for i in range(len(documents))]


def test_ready_shows_the_served_model(through_vllm: TestClient) -> None:
    body = through_vllm.get("/readyz").json()
    assert body["ready"], body
    assert body["model"]["model"] == f"vllm:lychee:{NAMES[0]}:px{PIXELS}"


def test_text_scores_equal_the_in_process_scorer(
    through_vllm: TestClient, in_process: TestClient
) -> None:
    documents: list[object] = [
        "TrailPeak Ember 2-Person Tent, Waterproof",
        "Packwise Packing Cubes, 4 Sizes",
        "ToeHold Hiking Boot Insoles",
        "Camping lantern, rechargeable",
        "Tent footprint for 4 person tents",
    ]
    there = scores(through_vllm, "4 person tent", documents)
    here = scores(in_process, "4 person tent", documents)
    assert there == pytest.approx(here, abs=TEXT_TOLERANCE)
    assert len(set(here)) > 1  # the pairs score apart: equality is not a constant


@pytest.mark.parametrize(
    ("query", "documents"),
    [
        ({"image_base64": png_base64((250, 120, 0))}, [{"text": "TrailPeak tent"}, "socks"]),
        ("tent", [{"image_url": "images/p00002.png"}, {"image_url": "images/p00003.png"}]),
        (
            {"text": "tent", "image_url": "images/p00001.png"},
            [
                {"text": "TrailPeak tent", "image_url": "images/p00002.png"},
                {"text": "Packing cubes", "image_url": "images/p00003.png"},
                "no image here",
            ],
        ),
    ],
    ids=["image-text", "text-image", "image+text-image+text"],
)
def test_image_scores_equal_the_in_process_scorer(
    through_vllm: TestClient, in_process: TestClient, query: object, documents: list[object]
) -> None:
    there = scores(through_vllm, query, documents)
    here = scores(in_process, query, documents)
    assert there == pytest.approx(here, abs=IMAGE_TOLERANCE)


async def test_a_window_above_the_call_size_comes_back_whole_and_in_order(
    served: Served,
) -> None:
    scorer = VllmScorer(served.url, model=NAMES[0], call_size=3, max_pixels=PIXELS)
    await scorer.load()
    assert scorer.state.ready, scorer.state.reason
    documents = [make_document(f"d{i}", f"product {i} " + "tent " * (i % 4)) for i in range(11)]
    window = await scorer.score(Query("tent"), documents, "judge", deadline=Deadline.after(60))
    one_by_one = [
        (await scorer.score(Query("tent"), [d], "judge", deadline=Deadline.after(60)))[0]
        for d in documents
    ]
    assert window == pytest.approx(one_by_one, abs=TEXT_TOLERANCE)
    assert len(set(round(s, 6) for s in window)) > 3  # distinct scores: order is checked
    assert scorer.server_stats()["ok"] == 12
    await scorer.close()


async def test_another_served_model_is_a_cache_miss(served: Served) -> None:
    cache = MemoryCache(1000)
    documents = [make_document(f"d{i}", f"product {i}") for i in range(4)]

    async def run(name: str) -> tuple[int, int]:
        scorer = VllmScorer(served.url, model=name, max_pixels=PIXELS)
        await scorer.load()
        service = ScoringService(scorer, cache)
        report = await service.score(Query("tent"), documents, "judge", Deadline.after(60))
        await scorer.close()
        assert report.status == "ok", report.reason
        return report.cache_hits, report.cache_misses

    assert await run(NAMES[0]) == (0, 4)
    assert await run(NAMES[0]) == (4, 0)  # the same served model: every pair cached
    assert await run(NAMES[1]) == (0, 4)  # another served model: no score of the first


def test_a_slowed_vllm_degrades_within_the_deadline(served: Served) -> None:
    # every chunk of vLLM's answers waits a second (from the start: the delay is taken per
    # connection), so the load's warm-up is slow too but within its own timeout
    proxy = SlowProxy("127.0.0.1", served.port, delay=1.0).start()
    try:
        settings = make_settings(
            scorer={"kind": "vllm", "url": proxy.url, "model": NAMES[0], "max_pixels": PIXELS},
            cache={"kind": "none"},
        )
        with TestClient(create_app(settings, wait_for_model=True)) as client:
            for query in ("tent", "boots", "lantern"):
                started = time.perf_counter()
                body = client.post(
                    "/search", json={"query": query, "size": 5, "timeout_ms": 300}
                ).json()
                took_ms = (time.perf_counter() - started) * 1000
                assert body["rerank_status"] == "fallback", body
                assert body["hits"]  # the engine's order, still an answer
                assert took_ms < 300 + 50, took_ms
    finally:
        proxy.stop()


def test_a_killed_vllm_falls_back_and_is_used_again_without_a_restart(
    served: Served,
) -> None:
    settings = make_settings(
        scorer={
            "kind": "vllm",
            "url": served.url,
            "model": NAMES[0],
            "max_pixels": PIXELS,
            "breaker_cooldown_s": 1.0,
        },
        cache={"kind": "none"},
    )
    with TestClient(create_app(settings, wait_for_model=True)) as client:
        ok = client.post("/search", json={"query": "tent", "size": 3}).json()
        assert ok["rerank_status"] == "ok", ok
        vllm_cpu.stop(SERVER, served.state)
        for _ in range(4):  # unreachable, then refused at once by the open breaker
            started = time.perf_counter()
            body = client.post(
                "/search", json={"query": "sleeping bag", "size": 3, "timeout_ms": 500}
            ).json()
            assert (time.perf_counter() - started) * 1000 < 500 + 50
            assert body["rerank_status"] == "fallback", body
            assert len(body["hits"]) == 3
        assert "circuit open" in body["reason"] or "unreachable" in body["reason"], body
        rerank = client.post("/api/rerank", json={"query": "tent", "documents": ["a", "b"]})
        assert rerank.status_code == 503, rerank.text
        readyz = client.get("/readyz").json()
        assert readyz["model"]["status"] == "ready"  # the replica still answers (fallback)
        vllm_cpu.start(
            str(served.model),
            served.args,
            name=SERVER,
            state_dir=served.state,
            served_model_name=NAMES[0],
            port=served.port,
        )
        deadline = time.monotonic() + 30
        while True:  # the next probe after the cooldown closes the breaker by itself
            body = client.post("/search", json={"query": "tent", "size": 3}).json()
            if body["rerank_status"] == "ok" or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        assert body["rerank_status"] == "ok", body
        assert httpx.get(f"{served.url}/health", timeout=5).status_code == 200
