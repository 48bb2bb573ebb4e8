"""vLLM serving the tiny Lychee by the printed recipe (`rerank-sidecar vllm-args --family lychee`)
gives the in-process `lychee` scorer's P(yes) on the same weights.

Tolerances (float32 on both sides):
- text pairs: 1e-6. The prompt token ids are the same and the arithmetic differs only in
  summation order (observed ~1e-7).
- image pairs: 1e-3. Two known sources: (1) vLLM preprocesses images with transformers'
  torchvision image processor, the sidecar with the PIL one; their resize differs by up to
  ~0.015 in normalized pixel values whenever an image is resized (sizes that are multiples of 28
  inside the pixel range are not resized and match to 1e-7); (2) even with identical pixel
  values the scores differ by ~1e-4: vLLM runs its own Qwen2.5-VL vision tower (patch
  embedding, windowed attention, rotary embedding) whose float32 arithmetic is not
  transformers' (not the window partition: a 56x56 image, one window, differs by 4e-5 too).
  Observed at most ~1.5e-4 on this model, held at 1e-3; unmeasured on real Lychee weights.
"""

from __future__ import annotations

import base64
import io
import random
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.conftest import TINY_LYCHEE_PIXELS
from tests.vllm_server import VllmServer

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

TEXT_TOLERANCE = 1e-6
IMAGE_TOLERANCE = 1e-3
INSTRUCTION = "Given an e-commerce search query, rank product titles by their relevance."
DOCS = [
    "red running shoes | lightweight mesh | cushioned sole",
    "waterproof tent for camping",
    "packing cubes for carry-on suitcase, 4 sizes",
    "hiking boot insoles | arch support",
]


@pytest.fixture(scope="module")
def in_process(tiny_lychee_for_vllm: Any) -> Iterator[Any]:
    from sidecar.scoring.lychee import LycheeScorer

    scorer = LycheeScorer(
        str(tiny_lychee_for_vllm),
        min_pixels=int(TINY_LYCHEE_PIXELS[1]),
        max_pixels=int(TINY_LYCHEE_PIXELS[3]),
        device="cpu",
    )
    scorer.load_sync()
    yield scorer


def _noise(width: int, height: int, seed: int) -> Any:
    from PIL import Image

    rng = random.Random(seed)
    image = Image.new("RGB", (width, height))
    image.putdata([tuple(rng.randrange(256) for _ in range(3)) for _ in range(width * height)])
    return image


def _data_url(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _side(text: str, image: Any) -> str | dict[str, Any]:
    """A score input as the sidecar's client sends it: text alone as a string, else content
    parts (the image as a data: URL, then the text if any)."""
    if image is None:
        return text
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": _data_url(image)}}]
    if text:
        parts.append({"type": "text", "text": text})
    return {"content": parts}


def _score(server: VllmServer, query: Any, documents: list[Any], **extra: Any) -> list[float]:
    body = {"model": server.model, "queries": query, "documents": documents, **extra}
    response = httpx.post(f"{server.url}/v1/score", json=body, timeout=120, trust_env=False)
    response.raise_for_status()
    data = response.json()["data"]
    assert [d["index"] for d in data] == list(range(len(documents)))
    return [float(d["score"]) for d in data]


def test_served_with_exactly_the_printed_recipe(vllm_lychee: VllmServer) -> None:
    command = [str(part) for part in vllm_lychee.info["command"]]  # type: ignore[union-attr]
    assert command[-len(vllm_lychee.args) :] == list(vllm_lychee.args)
    assert "vllm.entrypoints.openai.api_server" in command


def test_text_pairs_match_the_in_process_scorer(vllm_lychee: VllmServer, in_process: Any) -> None:
    queries = ["red running shoes", "帐篷", "4 person tent for rain"]
    for query in queries:
        local = in_process.forward(
            [in_process.prepare_pair(INSTRUCTION, None, query, doc, None) for doc in DOCS]
        )
        served = _score(vllm_lychee, query, DOCS, instruction=INSTRUCTION)
        assert served == pytest.approx(local, abs=TEXT_TOLERANCE, rel=0)


@pytest.mark.parametrize(
    ("query_image", "doc_image"),
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["neither", "query-image", "document-image", "both"],
)
@pytest.mark.parametrize(
    "sizes", [((84, 56), (56, 112)), ((90, 61), (130, 47))], ids=["grid-sized", "resized"]
)
def test_image_pairs_match_the_in_process_scorer(
    vllm_lychee: VllmServer,
    in_process: Any,
    query_image: bool,
    doc_image: bool,
    sizes: tuple[tuple[int, int], tuple[int, int]],
) -> None:
    q_img = _noise(*sizes[0], seed=1) if query_image else None
    d_imgs = [_noise(*sizes[1], seed=10 + i) if doc_image else None for i in range(len(DOCS))]
    query = "red running shoes"
    local = in_process.forward(
        [
            in_process.prepare_pair(INSTRUCTION, q_img, query, doc, img)
            for doc, img in zip(DOCS, d_imgs, strict=True)
        ]
    )
    served = _score(
        vllm_lychee,
        _side(query, q_img),
        [_side(doc, img) for doc, img in zip(DOCS, d_imgs, strict=True)],
        instruction=INSTRUCTION,
    )
    tolerance = IMAGE_TOLERANCE if (query_image or doc_image) else TEXT_TOLERANCE
    assert served == pytest.approx(local, abs=tolerance, rel=0)


def test_an_image_alone_without_text(vllm_lychee: VllmServer, in_process: Any) -> None:
    q_img, d_img = _noise(56, 56, seed=3), _noise(84, 84, seed=4)
    local = in_process.forward([in_process.prepare_pair(INSTRUCTION, q_img, "", "", d_img)])
    served = _score(vllm_lychee, _side("", q_img), [_side("", d_img)], instruction=INSTRUCTION)
    assert served == pytest.approx(local, abs=IMAGE_TOLERANCE, rel=0)


def test_rerank_route_gives_the_score_routes_scores(vllm_lychee: VllmServer) -> None:
    scores = _score(vllm_lychee, "tent", DOCS, instruction=INSTRUCTION)
    response = httpx.post(
        f"{vllm_lychee.url}/v1/rerank",
        json={
            "model": vllm_lychee.model,
            "query": "tent",
            "documents": DOCS,
            "instruction": INSTRUCTION,
        },
        timeout=120,
        trust_env=False,
    )
    response.raise_for_status()
    results = response.json()["results"]
    by_index = {r["index"]: r["relevance_score"] for r in results}
    assert [by_index[i] for i in range(len(DOCS))] == pytest.approx(scores, abs=1e-7)
    assert [r["relevance_score"] for r in results] == sorted(by_index.values(), reverse=True)


def test_the_shared_prefix_is_cached(vllm_lychee: VllmServer) -> None:
    """Block size 32 (the recipe's) lets the system turn, instruction and query be reused by
    every document of a window: the prefix-cache hit counter grows."""
    before = _prefix_hits(vllm_lychee)
    _score(vllm_lychee, "a query nobody sent before 7", DOCS * 3, instruction=INSTRUCTION)
    assert _prefix_hits(vllm_lychee) - before >= 32 * (len(DOCS) * 3 - 1)


def _prefix_hits(server: VllmServer) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10, trust_env=False).text
    found = re.search(r"^vllm:prefix_cache_hits_total\{[^}]*\} (\S+)$", text, re.M)
    assert found, "vLLM's /metrics has no vllm:prefix_cache_hits_total"
    return float(found.group(1))


def test_without_instruction_the_template_refuses(vllm_lychee: VllmServer) -> None:
    body = {"model": vllm_lychee.model, "queries": "q", "documents": ["d"]}
    response = httpx.post(f"{vllm_lychee.url}/v1/score", json=body, timeout=60, trust_env=False)
    assert response.status_code == 400
    assert "instruction" in response.text


def test_vllm_fetches_no_image_url(vllm_lychee: VllmServer) -> None:
    """Images travel as data: URLs the sidecar made; the recipe leaves vLLM no host to fetch."""
    query = {"content": [{"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/x.png"}}]}
    body = {
        "model": vllm_lychee.model,
        "queries": query,
        "documents": ["d"],
        "instruction": INSTRUCTION,
    }
    response = httpx.post(f"{vllm_lychee.url}/v1/score", json=body, timeout=60, trust_env=False)
    assert response.status_code == 400
    assert "allowed domains" in response.text
