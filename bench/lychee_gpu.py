"""Lychee-rerank-mm scorer on a GPU: the published Qwen2.5-VL-7B/3B architectures, random bf16
weights, the sidecar's own batched forward pass.

    python -m bench.lychee_gpu [--models 7b,3b] [--reps 20] [--docs 50] [--json out.json]

Measures, per model: p50/p95 latency of 50 text documents; 50 image+text documents at
max_pixels 256*28*28 and 1280*28*28 (800x800 product images); flash-attention vs sdpa (when
flash-attn is installed); the micro-batched scorer vs a naive one-pair-at-a-time loop; achieved
TFLOP/s against the card's peak; and allocated memory before/after 2,000 documents in a row.
Random weights give meaningless scores but the same arithmetic as the real checkpoint.
The goal: 50 text documents on the 7B within 250 ms on an H100 (Lychee Rerank MM promises a
reranked answer within 500 ms).

Without CUDA it says so and runs a CPU smoke path on the tiny test model (a few pairs, p50).
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
IMAGE_PAD, VISION_START, VISION_END, BOS = 151655, 151652, 151653, 151643
YES, NO = 9693, 2152  # Qwen2 vocabulary ids of "yes" and "no"
# Dense bf16 peak TFLOP/s (no sparsity), by device-name fragment.
PEAKS = {"H200": 989.0, "H100 SXM": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0}
PROMPT_TOKENS = 64  # system + instruct + markers of the rendered prompt
QUERY_TOKENS = 8
DOC_TOKENS = 120  # about 512 characters of title and selling points


def config_for(name: str) -> Any:
    from transformers import Qwen2_5_VLConfig

    spec = SPECS[name]
    text = {
        **spec["text"],
        "max_position_embeddings": 128_000,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 1_000_000.0,
            "mrope_section": spec.get("mrope", [16, 24, 24]),
        },
        "bos_token_id": BOS,
        "eos_token_id": 151645,
        "pad_token_id": BOS,
    }
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config={**_VISION, **spec.get("vision", {}), "out_hidden_size": spec["vision_out"]},
        image_token_id=IMAGE_PAD,
        video_token_id=151656,
        vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END,
        tie_word_embeddings=spec["tie"],
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


def rss_mib() -> float:
    import os

    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="7b,3b")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--docs", type=int, default=50)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--dry-run", action="store_true", help="the GPU path at toy size on the CPU (checks code)"
    )
    args = parser.parse_args()
    import torch

    if args.dry_run:
        result = gpu_bench(["dry"], 2, 6, device="cpu")
    elif torch.cuda.is_available():
        result = gpu_bench(args.models.split(","), args.reps, args.docs)
    else:
        print("no CUDA device: the GPU bench did not run; CPU smoke path with the tiny model")
        result = cpu_smoke(max(3, args.reps // 4))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
