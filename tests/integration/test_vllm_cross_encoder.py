"""vLLM serving the tiny BERT cross-encoder by the printed recipe (`rerank-sidecar vllm-args
--family cross-encoder`) gives the in-process `cross-encoder` scorer's scores: the same text pair
tokenization (vLLM truncates longest first in the tokenizer when the request sends
`truncate_prompt_tokens`, as sentence-transformers cuts a pair), the same sigmoid of the one
label. Held to 1e-6 (observed ~1e-7, float32 both sides)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.vllm_server import VllmServer

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

TOLERANCE = 1e-6
QUERIES = ["waterproof hiking boots", "4 person tent", "laptop"]
DOCS = [
    "waterproof hiking boots | leather | ankle support",
    "laptop stand | aluminium | adjustable height",
    "TrailPeak 4 person tent | freestanding | rain fly",
    "packing cubes " * 100,  # longer than the model's 128 tokens: cut, longest side first
]


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.fixtures.tiny_cross_encoder import build_tiny_cross_encoder

    return build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce-vllm"), head_dim=32)


@pytest.fixture(scope="module")
def vllm_cross_encoder(
    tiny_cross_encoder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VllmServer]:
    """Module-scoped: the server lives only while this module runs (about 3 GB resident)."""
    from tests.vllm_server import serve, unavailable

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    server = serve(
        "cross-encoder",
        tiny_cross_encoder,
        tmp_path_factory.mktemp("vllm-ce-state"),
        "--dtype",
        "float32",
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def in_process(tiny_cross_encoder: Path) -> Any:
    from sidecar.scoring.cross_encoder import CrossEncoderScorer

    scorer = CrossEncoderScorer(str(tiny_cross_encoder), device="cpu", micro_batching=False)
    scorer.load_sync()
    return scorer


@pytest.mark.parametrize("query", QUERIES)
def test_scores_match_the_in_process_scorer(
    vllm_cross_encoder: VllmServer, in_process: Any, query: str
) -> None:
    local = in_process.score_pairs(in_process.tokenize(query, DOCS))
    body = {
        "model": vllm_cross_encoder.model,
        "queries": query,
        "documents": DOCS,
        "truncate_prompt_tokens": -1,  # the model's limit, cut inside the tokenizer
    }
    response = httpx.post(
        f"{vllm_cross_encoder.url}/v1/score", json=body, timeout=60, trust_env=False
    )
    response.raise_for_status()
    served = [d["score"] for d in response.json()["data"]]
    assert served == pytest.approx(local, abs=TOLERANCE, rel=0)
    assert len(set(local)) == len(local)  # the pairs score apart: the check can fail


def test_a_pair_over_the_limit_without_truncation_is_refused(
    vllm_cross_encoder: VllmServer,
) -> None:
    """Without `truncate_prompt_tokens` vLLM refuses a long pair (400) instead of cutting it:
    the client must send it."""
    body = {"model": vllm_cross_encoder.model, "queries": "q", "documents": [DOCS[-1]]}
    response = httpx.post(
        f"{vllm_cross_encoder.url}/v1/score", json=body, timeout=60, trust_env=False
    )
    assert response.status_code == 400
    assert "maximum context length" in response.text
