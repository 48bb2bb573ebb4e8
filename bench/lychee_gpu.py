"""Lychee-rerank-mm scorer on a GPU: the published Qwen2.5-VL-7B/3B architectures, random bf16
weights, the sidecar's own batched forward pass.

    python -m bench.lychee_gpu [--models 7b,3b] [--reps 20] [--docs 50] [--json out.json]
    python -m bench.lychee_gpu --vllm [--models 7b] [--model PATH] [--reps 20] [--docs 50]

Measures, per model: p50/p95 latency of 50 text documents; 50 image+text documents at
max_pixels 256*28*28 and 1280*28*28 (800x800 product images); flash-attention vs sdpa (when
flash-attn is installed); the micro-batched scorer vs a naive one-pair-at-a-time loop; achieved
TFLOP/s against the card's peak; and allocated memory before/after 2,000 documents in a row.
Random weights give meaningless scores but the same arithmetic as the real checkpoint.
The goal: 50 text documents on the 7B within 250 ms on an H100 (Lychee Rerank MM promises a
reranked answer within 500 ms).

Without CUDA it says so and runs a CPU smoke path on the tiny test model (a few pairs, p50).

`--vllm`: in process beside vLLM, the same 7B architecture, random weights on both sides (vLLM
with `--load-format dummy`, started by the `rerank-sidecar vllm-args` recipe plus `--dtype
bfloat16`), both driven through the sidecar's own scorers (`LycheeScorer.score`, `VllmScorer.score`)
on the same 50 documents, text and image+text: p50/p95 and pairs/s, as a table. The model folder
is built here from the published architecture numbers (config.json, preprocessor_config.json)
with a stand-in tokenizer: Qwen's real tokenizer (151k merges) cannot be made without the Hugging
Face hub, so a byte-level BPE is trained on the demo catalog with Qwen's special tokens and the
config's special ids point at it; token counts per pair therefore differ from the real model's
(reported in the table). Pass `--model PATH` to a local folder that has the real tokenizer (e.g. a
Lychee or Qwen2.5-VL-7B download; its weights are not read) to use it instead. vLLM runs from
VLLM_PYTHON (an interpreter with a CUDA vLLM) or the cached CPU environment. Without CUDA
`--vllm` stops at once with a message (`--vllm --dry-run`: the toy size on vLLM's CPU build).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

# Published configs of Qwen/Qwen2.5-VL-7B-Instruct and Qwen/Qwen2.5-VL-3B-Instruct (config.json).
_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
    "in_channels": 3,
    "hidden_act": "silu",
}
SPECS: dict[str, dict[str, Any]] = {
    "7b": {
        "text": {
            "vocab_size": 152064,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
        },
        "vision_out": 3584,
        "tie": False,
    },
    "3b": {
        "text": {
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 11008,
            "num_hidden_layers": 36,
            "num_attention_heads": 16,
            "num_key_value_heads": 2,
        },
        "vision_out": 2048,
        "tie": True,
    },
}
# Not a published model: the same code path at toy size, for `--dry-run` on a CPU.
SPECS["dry"] = {
    "text": {
        "vocab_size": 152064,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
    "vision_out": 64,
    "tie": False,
    "vision": {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "fullatt_block_indexes": [1],
    },
    "mrope": [2, 3, 3],
}
# The same toy size with head_dim 32 (vLLM's CPU attention refuses 16): `--vllm --dry-run`.
SPECS["dry32"] = {
    **SPECS["dry"],
    "text": {**SPECS["dry"]["text"], "num_attention_heads": 2, "num_key_value_heads": 1},
    "mrope": [4, 6, 6],
}
IMAGE_PAD, VISION_START, VISION_END, BOS = 151655, 151652, 151653, 151643
YES, NO = 9693, 2152  # Qwen2 vocabulary ids of "yes" and "no"
# Dense bf16 peak TFLOP/s (no sparsity), by device-name fragment.
PEAKS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0}
PROMPT_TOKENS = 64  # system + instruct + markers of the rendered prompt
QUERY_TOKENS = 8
DOC_TOKENS = 120  # about 512 characters of title and selling points


def config_for(name: str, special_ids: dict[str, int] | None = None) -> Any:
    """The published architecture `name`; `special_ids` (token -> id) point its special token
    ids at another tokenizer's (the stand-in one of the vLLM path)."""
    from transformers import Qwen2_5_VLConfig

    spec = SPECS[name]
    ids = {
        "<|endoftext|>": BOS,
        "<|im_end|>": 151645,
        "<|vision_start|>": VISION_START,
        "<|vision_end|>": VISION_END,
        "<|image_pad|>": IMAGE_PAD,
        "<|video_pad|>": 151656,
        **(special_ids or {}),
    }
    text = {
        **spec["text"],
        "max_position_embeddings": 128_000,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": spec.get("mrope", [16, 24, 24]),
        },
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config={**_VISION, **spec.get("vision", {}), "out_hidden_size": spec["vision_out"]},
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=spec["tie"],
        architectures=["Qwen2_5_VLForConditionalGeneration"],
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples, 50) * 1000, 1),
        "p95_ms": round(percentile(samples, 95) * 1000, 1),
        "mean_ms": round(statistics.fmean(samples) * 1000, 1),
    }


# ----- GPU path --------------------------------------------------------------------------------
def gpu_pairs(count: int, scorer: Any, with_images: bool, seed: int) -> list[Any]:
    """Synthetic pairs shaped like the rendered prompt: random text ids, and for image pairs an
    800x800 product image with as many pad tokens as the scorer's processor gives it."""
    import torch
    from PIL import Image

    from sidecar.scoring.lychee import Prepared

    generator = torch.Generator().manual_seed(seed)
    pairs = []
    for i in range(count):
        doc_tokens = DOC_TOKENS - 40 + (i * 37) % 80  # mixed lengths, mean ~DOC_TOKENS
        ids = torch.randint(
            1000, 150_000, (PROMPT_TOKENS + QUERY_TOKENS + doc_tokens,), generator=generator
        ).tolist()
        if not with_images:
            pairs.append(Prepared(ids))
            continue
        image = Image.new("RGB", (800, 800), ((i * 40) % 255, 90, 160))
        pads = [IMAGE_PAD] * scorer.image_tokens(image)
        cut = PROMPT_TOKENS + QUERY_TOKENS
        ids = [*ids[:cut], VISION_START, *pads, VISION_END, *ids[cut:]]
        pairs.append(Prepared(ids, (image,)))
    return pairs


def forward_flops(config: Any, pairs: list[Any]) -> float:
    """2 x parameters x tokens for the language model and the vision tower, plus attention
    (4 x layers x hidden x seq^2 per sequence, causal ~ half)."""
    text = config.text_config
    h, inter, layers = text.hidden_size, text.intermediate_size, text.num_hidden_layers
    kv = text.num_key_value_heads * (h // text.num_attention_heads)
    per_token = layers * (2 * h * h + 2 * h * kv + 3 * h * inter)
    vis = config.vision_config
    vis_per_patch = vis.depth * (
        4 * vis.hidden_size**2 + 3 * vis.hidden_size * vis.intermediate_size
    )
    flops = 0.0
    for pair in pairs:
        seq = len(pair.input_ids)
        flops += 2 * per_token * seq + 2 * layers * h * seq * seq
        patches = pair.input_ids.count(IMAGE_PAD) * vis.spatial_merge_size**2
        flops += 2 * vis_per_patch * patches
    return flops


def peak_tflops(device_name: str) -> float | None:
    for fragment, peak in PEAKS.items():
        if fragment in device_name:
            return peak
    return None


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def build_gpu_scorer(
    name: str, attention: str, max_pixels: int, batch: int, tokens: int, device: str = "cuda"
) -> Any:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from sidecar.scoring.lychee import LycheeScorer

    config = config_for(name)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=dtype, attn_implementation=attention
        )
    model.eval()
    processor = Qwen2VLImageProcessorPil(min_pixels=4 * 28 * 28, max_pixels=max_pixels)
    scorer = LycheeScorer(
        f"random-{name}",
        max_pixels=max_pixels,
        batch_size=batch,
        max_batch_tokens=tokens,
        max_wait_ms=0,
    )
    scorer.attach(model, processor, yes_id=YES, no_id=NO, pad_id=BOS, device=device, dtype=dtype)
    return scorer, config


def time_batched(scorer: Any, pairs: list[Any], reps: int) -> list[float]:
    async def run() -> list[float]:
        samples = []
        for _ in range(reps):
            sync(scorer.device)
            start = time.perf_counter()
            await scorer.batcher.submit(pairs, [p.tokens for p in pairs])
            sync(scorer.device)
            samples.append(time.perf_counter() - start)
        return samples

    asyncio.run(run())  # warm-up (kernels, allocator)
    return asyncio.run(run())


def time_naive(scorer: Any, pairs: list[Any], reps: int) -> list[float]:
    samples = []
    for _ in range(reps):
        sync(scorer.device)
        start = time.perf_counter()
        for pair in pairs:
            scorer.forward([pair])
        sync(scorer.device)
        samples.append(time.perf_counter() - start)
    return samples


def gpu_bench(models: list[str], reps: int, docs: int, device: str = "cuda") -> dict[str, Any]:
    import torch

    from sidecar.scoring.device import flash_attn_usable

    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu (dry run)"
    peak = peak_tflops(name)
    out: dict[str, Any] = {"device": name, "peak_bf16_tflops": peak, "models": {}}
    flash = device == "cuda" and flash_attn_usable()
    attentions = ["sdpa"] + (["flash_attention_2"] if flash else [])
    if len(attentions) == 1:
        out["flash_attention_2"] = "flash-attn is not installed: sdpa only"
    for model_name in models:
        rows: dict[str, Any] = {}
        for attention in attentions:
            for label, max_pixels, images in (
                ("text", 1280 * 28 * 28, False),
                ("image+text@256", 256 * 28 * 28, True),
                ("image+text@1280", 1280 * 28 * 28, True),
            ):
                scorer, config = build_gpu_scorer(
                    model_name, attention, max_pixels, 64, 32_768, device
                )
                pairs = gpu_pairs(docs, scorer, images, seed=1)
                samples = time_batched(scorer, pairs, reps)
                flops = forward_flops(config, pairs)
                row = {**summary(samples), "tokens": sum(p.tokens for p in pairs)}
                row["tflops"] = round(flops / percentile(samples, 50) / 1e12, 2)
                if peak:
                    row["mfu"] = round(row["tflops"] / peak, 3)
                if label == "text" and attention == "sdpa":
                    row["naive_loop"] = summary(time_naive(scorer, pairs, max(3, reps // 4)))
                    if device == "cuda":
                        row["memory"] = memory_flatness(scorer, pairs)
                rows[f"{label}/{attention}"] = row
                print(model_name, label, attention, json.dumps(row), flush=True)
                del scorer
                if device == "cuda":
                    torch.cuda.empty_cache()
        out["models"][model_name] = rows
    return out


def memory_flatness(scorer: Any, pairs: list[Any], total: int = 2000) -> dict[str, float]:
    import torch

    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()

    async def run() -> None:
        for _ in range(total // len(pairs)):
            await scorer.batcher.submit(pairs, [p.tokens for p in pairs])

    asyncio.run(run())
    torch.cuda.synchronize()
    gib = 1024**3
    return {
        "documents": total,
        "allocated_before_gib": round(before / gib, 3),
        "allocated_after_gib": round(torch.cuda.memory_allocated() / gib, 3),
        "peak_gib": round(torch.cuda.max_memory_allocated() / gib, 3),
    }


# ----- CPU smoke path ----------------------------------------------------------------------------
def cpu_smoke(reps: int) -> dict[str, Any]:
    from PIL import Image

    from sidecar.deadline import Deadline
    from sidecar.documents import make_document
    from sidecar.query import Query
    from sidecar.scoring.lychee import LycheeScorer
    from tests.fixtures.tiny_qwen import build_tiny_qwen

    with tempfile.TemporaryDirectory() as folder:
        path = build_tiny_qwen(Path(folder) / "tiny")
        scorer = LycheeScorer(str(path), max_pixels=64 * 28 * 28, max_wait_ms=0)
        asyncio.run(scorer.load())
        if not scorer.state.ready:
            raise SystemExit(f"tiny model failed to load: {scorer.state.reason}")
        image = Image.new("RGB", (800, 800), (120, 40, 200))
        text_docs = [make_document(str(i), f"product {i} " * (2 + i % 5)) for i in range(8)]
        image_docs = [make_document(str(i), f"product {i}", image_urls=["p.png"]) for i in range(8)]
        query = Query("red running shoes")

        async def run(documents: list[Any], images: dict[str, Any]) -> list[float]:
            samples = []
            for _ in range(reps):
                start = time.perf_counter()
                await scorer.score(
                    query, documents, "instruct", images, deadline=Deadline.after(60.0)
                )
                samples.append(time.perf_counter() - start)
            return samples

        async def naive(documents: list[Any]) -> list[float]:
            samples = []
            for _ in range(reps):
                start = time.perf_counter()
                for doc in documents:
                    await scorer.score(query, [doc], "instruct", deadline=Deadline.after(60.0))
                samples.append(time.perf_counter() - start)
            return samples

        async def many(total: int) -> dict[str, float]:
            """Resident memory before/after `total` documents in a row (should stay flat)."""
            before = rss_mib()
            for start in range(0, total, 50):
                docs = [make_document(str(start + i), f"item {start + i}") for i in range(50)]
                await scorer.score(query, docs, "instruct", deadline=Deadline.after(60.0))
            return {"documents": total, "rss_before_mib": before, "rss_after_mib": rss_mib()}

        asyncio.run(many(100))  # allocator warm-up
        result = {
            "device": "cpu (tiny random Qwen2.5-VL: hidden 64, 2 layers; not a GPU number)",
            "memory, 2000 docs in a row": asyncio.run(many(2000)),
            "8 text docs, batched": summary(asyncio.run(run(text_docs, {}))),
            "8 text docs, one at a time": summary(asyncio.run(naive(text_docs))),
            "8 image+text docs @64*28*28, batched": summary(
                asyncio.run(run(image_docs, {"p.png": image}))
            ),
        }
        asyncio.run(scorer.close())
    return result


# ----- vLLM beside in process ------------------------------------------------------------------
VLLM_SERVER = "lychee-gpu-bench"
VLLM_MIN_PIXELS = 4 * 28 * 28
VLLM_MAX_PIXELS = 256 * 28 * 28  # an 800x800 product image: about 256 tokens


def stand_in_tokenizer(folder: Path, vocab_size: int = 4000) -> Any:
    """A byte-level BPE trained on the demo catalog's text, with Qwen's special tokens and
    `yes`/`no` as single tokens, saved into `folder` with a ChatML template. Not Qwen's tokenizer
    (that needs the hub): the same prompt takes other token counts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from sidecar.demo import load_catalog
    from tests.fixtures.tiny_qwen import CHAT_TEMPLATE, SPECIAL_TOKENS

    corpus = [
        f"{p['title']} | {' | '.join(p.get('selling_points', []))} {p.get('brand', '')}"
        for p in load_catalog()
    ]
    # "yes" and "no" alone (how the classifier looks them up) must be single tokens
    corpus += ["yes", "no", "Judge whether the Document meets the requirements"] * 200
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    for word in ("yes", "no"):
        if len(tokenizer.encode(word, add_special_tokens=False)) != 1:
            raise AssertionError(f"{word!r} must be one token of the stand-in vocabulary")
    tokenizer.save_pretrained(folder)
    return tokenizer


def build_model_folder(
    folder: Path, name: str, min_pixels: int = VLLM_MIN_PIXELS, max_pixels: int = VLLM_MAX_PIXELS
) -> Path:
    """A folder vLLM can serve with `--load-format dummy`: the published architecture `name`
    (config.json, no weights), the image processor's config and the stand-in tokenizer."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from tests.fixtures.tiny_qwen import SPECIAL_TOKENS

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = stand_in_tokenizer(folder)
    ids = {token: int(tokenizer.convert_tokens_to_ids(token)) for token in SPECIAL_TOKENS}
    config = config_for(name, special_ids=ids)
    config.torch_dtype = "bfloat16"
    config.save_pretrained(folder)
    Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels).save_pretrained(folder)
    return folder


def vllm_args(model_folder: Path, dtype: str) -> list[str]:
    """The product's recipe for lychee (what `rerank-sidecar vllm-args` prints), random weights."""
    from sidecar.scoring.vllm_recipe import recipe

    args = recipe("lychee", min_pixels=VLLM_MIN_PIXELS, max_pixels=VLLM_MAX_PIXELS, dtype=dtype)
    return [*args.args, "--load-format", "dummy"]


def bench_documents(count: int, with_images: bool) -> tuple[list[Any], dict[str, Any]]:
    """`count` demo products (title and selling points), with an 800x800 image each when
    `with_images`; the images keyed as the scorers look them up."""
    from PIL import Image

    from sidecar.demo import load_catalog
    from sidecar.documents import make_document

    docs, images = [], {}
    for i, p in enumerate(load_catalog()[:count]):
        url = f"bench/{p['id']}.png" if with_images else None
        docs.append(
            make_document(
                p["id"], p["title"], p.get("selling_points", []), image_urls=[url] if url else []
            )
        )
        if url:
            images[url] = Image.new("RGB", (800, 800), ((i * 40) % 255, 90, 160))
    return docs, images


def time_score(scorer: Any, docs: list[Any], images: dict[str, Any], reps: int) -> list[float]:
    from sidecar.deadline import Deadline
    from sidecar.query import Query

    async def run(count: int, tag: str) -> list[float]:
        samples = []
        for i in range(count):
            query = Query(f"waterproof hiking boots {tag}{i}")  # a new query each time
            start = time.perf_counter()
            await scorer.score(query, docs, "instruct", images, deadline=Deadline.after(120.0))
            samples.append(time.perf_counter() - start)
        return samples

    async def both() -> list[float]:
        await run(2, "warm")  # kernels, allocator, connections
        return await run(reps, "")

    return asyncio.run(both())


def vllm_bench(
    name: str, reps: int, docs: int, model_path: Path | None, device: str = "cuda"
) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from model_servers import vllm_cpu
    from sidecar.scoring.lychee import LycheeScorer
    from sidecar.scoring.vllm import VllmScorer

    work = Path(tempfile.mkdtemp(prefix="lychee-vllm-"))
    folder = model_path or build_model_folder(work / f"lychee-{name}", name)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    cases = {"text": bench_documents(docs, False), "image+text": bench_documents(docs, True)}
    out: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu (dry run)",
        "model": str(folder),
        "tokenizer": "from --model" if model_path else "stand-in BPE (not Qwen's): see --help",
        "max_pixels": VLLM_MAX_PIXELS,
        "rows": [],
    }

    def row(path: str, kind: str, samples: list[float]) -> None:
        p50 = percentile(samples, 50)
        entry = {"path": path, "documents": kind, "window": docs, **summary(samples)}
        entry["pairs_per_s"] = round(docs / p50, 1)
        out["rows"].append(entry)
        print(json.dumps(entry), flush=True)

    # in process first, then its memory is given back before vLLM takes its share of the GPU
    config = Qwen2_5_VLConfig.from_pretrained(folder)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=dtype, attn_implementation="sdpa"
        )
    model.eval()
    scorer = LycheeScorer(
        f"random-{name}", min_pixels=VLLM_MIN_PIXELS, max_pixels=VLLM_MAX_PIXELS, max_wait_ms=0
    )
    yes, no = (tokenizer.convert_tokens_to_ids(w) for w in ("yes", "no"))
    scorer.attach(
        model,
        Qwen2VLImageProcessorPil(min_pixels=VLLM_MIN_PIXELS, max_pixels=VLLM_MAX_PIXELS),
        yes_id=yes,
        no_id=no,
        pad_id=tokenizer.pad_token_id or 0,
        device=device,
        dtype=dtype,
        tokenizer=tokenizer,
    )
    for kind, (documents, images) in cases.items():
        row("in process", kind, time_score(scorer, documents, images, reps))
    del scorer, model
    if device == "cuda":
        torch.cuda.empty_cache()

    args = vllm_args(folder, "bfloat16" if device == "cuda" else "float32")
    out["vllm_args"] = args
    print(f"starting vLLM: {' '.join(args)}", flush=True)
    info = vllm_cpu.start(str(folder), args, name=VLLM_SERVER, state_dir=work / "state")
    try:
        out["vllm_ready_s"] = info.get("ready_s")
        remote = VllmScorer(
            str(info["url"]), model=str(info["served_model_name"]), max_pixels=VLLM_MAX_PIXELS
        )
        asyncio.run(remote.load())
        if not remote.state.ready:
            raise SystemExit(f"vLLM did not take the warm-up: {remote.state.reason}")
        for kind, (documents, images) in cases.items():
            row("vllm", kind, time_score(remote, documents, images, reps))
    finally:
        vllm_cpu.stop(VLLM_SERVER, work / "state")
    return out


def vllm_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['device']}, window {result['rows'][0]['window'] if result['rows'] else '?'}",
        "| path | documents | p50 ms | p95 ms | pairs/s |",
        "|---|---|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['path']} | {r['documents']} | {r['p50_ms']} | {r['p95_ms']} "
            f"| {r['pairs_per_s']} |"
        )
    return "\n".join(lines)


def rss_mib() -> float:
    import os

    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.lychee_gpu", description=(__doc__ or "").split("\n\n")[0]
    )
    p.add_argument("--models", default=None, help="7b,3b (--vllm: one of them; default 7b)")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--docs", type=int, default=50)
    p.add_argument("--json", type=Path)
    p.add_argument(
        "--dry-run", action="store_true", help="the GPU path at toy size on the CPU (checks code)"
    )
    p.add_argument(
        "--vllm", action="store_true", help="in process beside vLLM (--load-format dummy)"
    )
    p.add_argument(
        "--model",
        type=Path,
        help="--vllm: a local model folder with the real tokenizer (weights not read) instead "
        "of the folder built here from the published architecture and a stand-in tokenizer",
    )
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    import torch

    if args.vllm:
        if args.dry_run:
            result = vllm_bench("dry32", 2, 6, args.model, device="cpu")
        elif not torch.cuda.is_available():
            raise SystemExit(
                "bench.lychee_gpu --vllm needs a CUDA GPU (and VLLM_PYTHON: an interpreter with a "
                "CUDA build of vLLM); none here. `--vllm --dry-run` checks the path at toy size "
                "on vLLM's CPU build."
            )
        else:
            names = (args.models or "7b").split(",")
            if len(names) != 1 or names[0] not in ("7b", "3b"):
                raise SystemExit("--vllm takes one model: --models 7b or --models 3b")
            result = vllm_bench(names[0], args.reps, args.docs, args.model)
        print(vllm_table(result))
    elif args.dry_run:
        result = gpu_bench(["dry"], 2, 6, device="cpu")
    elif torch.cuda.is_available():
        result = gpu_bench((args.models or "7b,3b").split(","), args.reps, args.docs)
    else:
        print("no CUDA device: the GPU bench did not run; CPU smoke path with the tiny model")
        result = cpu_smoke(max(3, args.reps // 4))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
