"""LycheeScorer on a tiny random Qwen2.5-VL (tests/fixtures/tiny_qwen.py), fp32 on the CPU."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from sidecar.deadline import Deadline
from sidecar.documents import make_document
from sidecar.query import Query
from sidecar.scoring import device, prompt
from sidecar.scoring.lychee import LycheeScorer, Prepared
from tests.fixtures.tiny_qwen import build_tiny_qwen

INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query."
HEAD = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    f"<|im_start|>user\n<Instruct>: {INSTRUCTION}<Query>:"
)
TAIL = "<|im_end|>\n<|im_start|>assistant\n"
IMG = "<|vision_start|><|image_pad|><|vision_end|>"

GOLDEN = {
    "text->text": (False, False, HEAD + "red shoes\n<Document>:Runner | Mesh" + TAIL),
    "image->text": (True, False, HEAD + IMG + "red shoes\n<Document>:Runner | Mesh" + TAIL),
    "text->image": (False, True, HEAD + "red shoes\n<Document>:" + IMG + "Runner | Mesh" + TAIL),
    "image+text->image+text": (
        True,
        True,
        HEAD + IMG + "red shoes\n<Document>:" + IMG + "Runner | Mesh" + TAIL,
    ),
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen(tmp_path_factory.mktemp("tiny-qwen"))


@pytest.fixture(scope="module")
def scorer(tiny_dir: Path) -> LycheeScorer:
    s = LycheeScorer(str(tiny_dir), max_pixels=64 * 28 * 28, max_wait_ms=5)
    asyncio.run(s.load())
    assert s.state.ready, s.state.reason
    return s


def picture(size: tuple[int, int], color: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", size, color)
    for x in range(0, size[0], 7):  # some structure, so different images embed differently
        image.putpixel((x, (x * 3) % size[1]), (255 - color[0], color[1], 255 - color[2]))
    return image


@pytest.mark.parametrize("mode", sorted(GOLDEN))
def test_prompt_matches_golden_per_match_mode(mode: str, tiny_dir: Path) -> None:
    query_image, doc_image, golden = GOLDEN[mode]
    rendered = prompt.render(INSTRUCTION, "red shoes", query_image, "Runner | Mesh", doc_image)
    assert rendered == golden
    # The same turn through a ChatML chat template (the tiny tokenizer's) renders identically.
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    messages: Any = prompt.messages(
        INSTRUCTION, "red shoes", query_image, "Runner | Mesh", doc_image
    )
    templated = tokenizer.apply_chat_template(
        messages,
        tokenize=False,
        add_generation_prompt=True,
    )
    assert templated == golden


def test_image_pads_expand_per_image() -> None:
    text = prompt.render("i", "q", True, "d", True)
    expanded = prompt.expand_image_pads(text, [3, 5])
    assert expanded.count(prompt.IMAGE_PAD) == 8
    assert f"<|vision_start|>{prompt.IMAGE_PAD * 3}<|vision_end|>q" in expanded
    with pytest.raises(ValueError, match="2 image placeholders for 1 images"):
        prompt.expand_image_pads(text, [3])


def test_image_tokens_follow_max_pixels(scorer: LycheeScorer) -> None:
    # 800x800 at max_pixels 64*28*28 costs 64 language-model tokens (the table).
    pair = scorer.prepare_pair("i", None, "q", "d", Image.new("RGB", (800, 800)))
    assert scorer._pixels([pair])["image_grid_thw"].tolist() == [[1, 16, 16]]
    assert pair.input_ids.count(scorer._tokenizer.convert_tokens_to_ids("<|image_pad|>")) == 64
    # The count computed before processing matches the processor's grid for odd shapes too.
    for size in ((33, 517), (640, 480), (1200, 90), (20, 20)):
        image = Image.new("RGB", size)
        grid = scorer._pixels([Prepared([], (image,))])["image_grid_thw"][0]
        assert scorer.image_tokens(image) == int(grid.prod()) // 4, size


async def test_batched_scores_equal_one_at_a_time(scorer: LycheeScorer) -> None:
    images = {
        "a.png": picture((120, 90), (200, 30, 30)),
        "b.png": picture((60, 200), (20, 160, 40)),
        "q.png": picture((100, 100), (30, 30, 220)),
    }
    documents = [
        make_document("1", "Runner", ["Mesh"], ["a.png"]),
        make_document("2", "Waterproof two person tent for camping", ["Freestanding", "Light"]),
        make_document("3", "x", [], ["b.png"]),
        make_document("4", "Packing cubes for carry-on suitcase, 4 sizes", [], ["a.png"]),
        make_document("5", "Insoles"),
    ]
    for query in (Query("red running shoes"), Query("shoes", image_url="q.png")):
        batched = await scorer.score(
            query, documents, INSTRUCTION, images, deadline=Deadline.after(60)
        )
        single = [
            (await scorer.score(query, [d], INSTRUCTION, images, deadline=Deadline.after(60)))[0]
            for d in documents
        ]
        assert batched == pytest.approx(single, abs=1e-5)
        assert all(0.0 <= s <= 1.0 for s in batched)
        assert len({round(s, 6) for s in batched}) == len(batched)  # the pairs differ


async def test_concurrent_requests_share_batches(scorer: LycheeScorer) -> None:
    documents = [make_document(str(i), f"product {i} " * (i + 1)) for i in range(6)]
    before = scorer.batcher.stats.batches
    scorer.batcher.max_wait_s = 1.0  # both requests' preparation lands inside one wait
    together = await asyncio.gather(
        scorer.score(Query("tent"), documents[:3], INSTRUCTION, deadline=Deadline.after(60)),
        scorer.score(Query("shoes"), documents[3:], INSTRUCTION, deadline=Deadline.after(60)),
    )
    scorer.batcher.max_wait_s = 0.005
    assert scorer.batcher.stats.batches - before == 1  # six pairs, two requests, one forward
    alone = [
        await scorer.score(Query("tent"), documents[:3], INSTRUCTION, deadline=Deadline.after(60))
    ]
    assert together[0] == pytest.approx(alone[0], abs=1e-5)


def test_right_padding_would_be_wrong(scorer: LycheeScorer) -> None:
    """Guards the test above: the last position of a right-padded row is padding, and its
    score differs from the real one, so equal scores do prove the padding side."""
    import torch

    short = scorer.prepare_pair(INSTRUCTION, None, "q", "d", None)
    long = scorer.prepare_pair(INSTRUCTION, None, "q", "a much longer document " * 4, None)
    right = torch.full((2, long.tokens), scorer._pad)
    right[0, : short.tokens] = torch.tensor(short.input_ids)
    right[1] = torch.tensor(long.input_ids)
    mask = (torch.arange(long.tokens) < torch.tensor([[short.tokens], [long.tokens]])).long()
    with torch.inference_mode():
        logits = scorer._model(input_ids=right, attention_mask=mask).logits[0, -1]
    wrong = torch.softmax(logits[[scorer._no, scorer._yes]], -1)[1].item()
    assert abs(wrong - scorer.forward([short])[0]) > 1e-4


def test_ready_state_reports_device_dtype_and_attention(scorer: LycheeScorer) -> None:
    assert scorer.state.device == "cpu"
    assert scorer.state.detail is not None
    assert scorer.state.detail["dtype"] == "float32"
    assert scorer.state.detail["attention"] == "sdpa"
    assert scorer.model_id.endswith(f":px{64 * 28 * 28}")


async def test_missing_model_is_a_failed_state(tmp_path: Path) -> None:
    broken = LycheeScorer(str(tmp_path / "nothing-here"))
    await broken.load()
    assert broken.state.status == "failed" and broken.state.reason


def test_attention_fallback_chain(caplog: pytest.LogCaptureFixture) -> None:
    yes, no = (lambda: True), (lambda: False)
    with caplog.at_level(logging.INFO, logger="sidecar.scoring.device"):
        assert device.choose_attention("cuda", flash=yes, sdpa=yes) == "flash_attention_2"
        assert device.choose_attention("cuda", flash=no, sdpa=yes) == "sdpa"
        assert device.choose_attention("cuda", flash=no, sdpa=no) == "eager"
        assert device.choose_attention("cpu", flash=yes, sdpa=yes) == "sdpa"  # no flash on CPU
        assert device.choose_attention("cuda", "eager", flash=yes) == "eager"
    assert "attention: sdpa (flash-attn is not installed)" in caplog.text
    assert "attention: eager (neither flash-attn nor torch SDPA is available)" in caplog.text


def test_flash_attn_check_follows_the_import(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert device.flash_attn_usable() is False


def test_memory_refusal_names_needed_free_and_remedies(tiny_dir: Path) -> None:
    gib = device.GIB
    need = device.MemoryNeed(weights=16 * gib, activations=2 * gib, runtime=gib)
    device.check_fits(need, free_bytes=20 * gib)  # fits: no error
    with pytest.raises(device.InsufficientMemory) as info:
        device.check_fits(need, free_bytes=10 * gib, device="cuda:1")
    message = str(info.value)
    assert "needs about 19.0 GiB" in message
    assert "only 10.0 GiB is free" in message and "cuda:1" in message
    for remedy in ("3B", "scorer.max_batch_tokens", "scorer.max_pixels", "scorer.device"):
        assert remedy in message
    # The weights estimate reads the safetensors header: the tiny model's parameter count.
    from safetensors import safe_open

    with safe_open(str(tiny_dir / "model.safetensors"), "pt") as f:
        count = sum(_numel(f, key) for key in f.keys())  # noqa: SIM118 - not a dict
    assert device.weights_bytes(tiny_dir, 2) == 2 * count


def _numel(handle: object, key: str) -> int:
    shape = handle.get_slice(key).get_shape()  # type: ignore[attr-defined]
    total = 1
    for dim in shape:
        total *= dim
    return total


@pytest.mark.parametrize(("name", "published"), [("7b", 8.29e9), ("3b", 3.75e9)])
def test_parameter_estimate_matches_the_published_sizes(name: str, published: float) -> None:
    """Used for the memory check when the model is a hub id with nothing on disk yet."""
    from bench.lychee_gpu import config_for

    assert device.params_from_config(config_for(name)) == pytest.approx(published, rel=0.01)
