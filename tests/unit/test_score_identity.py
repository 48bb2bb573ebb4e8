"""Each scorer names everything that changes its scores, and the pair-score cache key follows it:
changing any item is a cache miss, never an old score served for the cache's TTL."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from sidecar.cache.keys import pair_key
from sidecar.cache.memory import MemoryCache
from sidecar.deadline import Deadline
from sidecar.documents import make_document
from sidecar.query import Query
from sidecar.scoring import prompt
from sidecar.scoring.lychee import LycheeScorer
from sidecar.scoring.minilm import MiniLMScorer, bundled_model_path
from sidecar.scoring_service import ScoringService
from tests.fixtures.tiny_qwen import build_tiny_qwen


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"))


def _flip_first_weight_byte(folder: Path) -> None:
    weights = max(folder.rglob("*.safetensors"), key=lambda p: p.stat().st_size)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # the tensors' last byte: same names, same shapes, other weights
    weights.write_bytes(bytes(data))


def test_minilm_identity_follows_the_weights_content_not_the_folder_name(tmp_path: Path) -> None:
    folder = tmp_path / "minilm"
    shutil.copytree(bundled_model_path(), folder)
    before = MiniLMScorer(str(folder))
    assert MiniLMScorer(str(folder)).score_identity == before.score_identity  # stable
    _flip_first_weight_byte(folder)  # an in-place upgrade: same path, new weights
    after = MiniLMScorer(str(folder))
    assert after.model_id == before.model_id
    assert after.score_identity != before.score_identity


def test_minilm_identity_changes_with_the_text_limit() -> None:
    assert MiniLMScorer(max_doc_chars=512).score_identity != (
        MiniLMScorer(max_doc_chars=256).score_identity
    )


def test_lychee_identity_changes_with_each_item(tiny_dir: Path, tmp_path: Path) -> None:
    base = LycheeScorer(str(tiny_dir)).score_identity
    assert LycheeScorer(str(tiny_dir)).score_identity == base
    assert LycheeScorer(str(tiny_dir), max_doc_chars=256).score_identity != base
    assert LycheeScorer(str(tiny_dir), min_pixels=16 * 28 * 28).score_identity != base
    assert LycheeScorer(str(tiny_dir), max_pixels=256 * 28 * 28).score_identity != base

    as_fp32 = LycheeScorer(str(tiny_dir))
    as_bf16 = LycheeScorer(str(tiny_dir))
    as_fp32.attach(None, None, yes_id=1, no_id=2, pad_id=0, device="cpu", dtype="torch.float32")
    as_bf16.attach(None, None, yes_id=1, no_id=2, pad_id=0, device="cpu", dtype="torch.bfloat16")
    assert as_fp32.score_identity != as_bf16.score_identity

    copy = tmp_path / tiny_dir.name
    shutil.copytree(tiny_dir, copy)
    assert LycheeScorer(str(copy)).score_identity == base  # the content, not the path
    _flip_first_weight_byte(copy)
    assert LycheeScorer(str(copy)).score_identity != base


def test_lychee_identity_changes_with_the_prompt_version(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = LycheeScorer(str(tiny_dir)).score_identity
    monkeypatch.setattr(prompt, "PROMPT_VERSION", prompt.PROMPT_VERSION + "-next")
    assert LycheeScorer(str(tiny_dir)).score_identity != base


def test_the_identity_enters_the_pair_key() -> None:
    args: dict[str, Any] = dict(
        prefix="rr:",
        model_id="m",
        instruction="i",
        query_key="q",
        doc_id="d",
        content_hash="h",
    )
    assert pair_key(**args, identity="a") != pair_key(**args, identity="b")


def test_a_new_identity_is_a_cache_miss_through_the_pipeline(
    minilm: MiniLMScorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = MemoryCache()
    scoring = ScoringService(minilm, cache)
    docs = [make_document("p1", "Waterproof hiking boots"), make_document("p2", "Rain jacket")]
    query = Query("hiking boots")

    def score() -> Any:
        return asyncio.run(scoring.score(query, docs, "inst", Deadline.after(30)))

    assert score().cache_misses == 2
    assert score().cache_hits == 2
    monkeypatch.setattr(minilm, "score_identity", minilm.score_identity + "-other-weights")
    assert score().cache_misses == 2  # nothing scored under the old identity is served


class SlowScorer:
    """The real MiniLM with a pause, so a request's deadline passes before its scores exist."""

    reads_images = False

    def __init__(self, inner: MiniLMScorer, pause_s: float) -> None:
        self.inner, self.pause_s = inner, pause_s
        self.model_id, self.state = inner.model_id, inner.state
        self.score_identity = inner.score_identity

    async def score(self, *args: Any, **kwargs: Any) -> list[float]:
        await asyncio.sleep(self.pause_s)
        return await self.inner.score(*args, **kwargs)


def test_a_late_write_loses_to_a_flush(minilm: MiniLMScorer) -> None:
    cache = MemoryCache()
    scoring = ScoringService(SlowScorer(minilm, 0.3), cache)
    docs = [make_document("p1", "Waterproof hiking boots")]

    async def run() -> tuple[Any, int]:
        report = await scoring.score(Query("boots"), docs, "inst", Deadline.after(0.05))
        scoring.flushed()  # an admin flush while the model is still working
        await cache.delete_prefix("rr:")
        await scoring.drain()  # the late write has had its chance
        return report, len(cache._data)

    report, entries = asyncio.run(run())
    assert report.status == "fallback" and entries == 0

    async def unflushed() -> int:
        await scoring.score(Query("boots"), docs, "inst", Deadline.after(0.05))
        await scoring.drain()
        return len(cache._data)

    assert asyncio.run(unflushed()) == 1  # without a flush the late write lands, as designed
