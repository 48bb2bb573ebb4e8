"""Where and how a Qwen2.5-VL scorer runs: device, dtype, attention kernel, and whether it fits.

Attention falls back flash_attention_2 -> sdpa -> eager: a missing `flash-attn` package is a slower
kernel, never a failed start. Before weights go to a GPU, the memory they need is compared with the
memory free, so a too-small card is a clear refusal instead of an out-of-memory crash mid-load.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GIB = 1024**3
RUNTIME_OVERHEAD_BYTES = int(0.75 * GIB)  # CUDA context, cuBLAS workspace, allocator slack


def flash_attn_usable() -> bool:
    """True when the flash-attn package imports (it is an optional GPU extra)."""
    if importlib.util.find_spec("flash_attn") is None:
        return False
    try:
        import flash_attn  # noqa: F401
    except Exception:  # a broken build (wrong CUDA, wrong torch) counts as absent
        return False
    return True


def sdpa_usable() -> bool:
    import torch

    return hasattr(torch.nn.functional, "scaled_dot_product_attention")


def choose_attention(
    device_type: str,
    override: str | None = None,
    *,
    flash: Callable[[], bool] = flash_attn_usable,
    sdpa: Callable[[], bool] = sdpa_usable,
) -> str:
    """The attention implementation to load with, logged with the reason."""
    if override:
        log.info("attention: %s (configured)", override)
        return override
    if device_type == "cuda" and flash():
        choice, why = "flash_attention_2", "flash-attn is installed"
    elif sdpa():
        why = "flash-attn is not installed" if device_type == "cuda" else f"{device_type} device"
        choice = "sdpa"
    else:
        choice, why = "eager", "neither flash-attn nor torch SDPA is available"
    log.info("attention: %s (%s)", choice, why)
    return choice


def choose_device(setting: str = "auto") -> tuple[str, Any]:
    """(device, dtype): bf16 on CUDA, fp32 on CPU, unless the setting names a device."""
    import torch

    device = setting
    if setting == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    return device, dtype


@dataclass(frozen=True)
class MemoryNeed:
    weights: int
    activations: int
    runtime: int = RUNTIME_OVERHEAD_BYTES

    @property
    def total(self) -> int:
        return self.weights + self.activations + self.runtime


def weights_bytes(model_dir: Path, bytes_per_param: int) -> int:
    """Bytes of the weights once loaded: safetensors on disk, rescaled to the load dtype."""
    files = list(model_dir.glob("*.safetensors"))
    if not files:
        return 0
    import json
    import struct

    params = 0
    for path in files:
        with open(path, "rb") as f:  # header only: 8-byte length, then JSON with tensor shapes
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in meta["shape"]:
                count *= dim
            params += count
    return params * bytes_per_param


def params_from_config(config: Any) -> int:
    """Parameter count of a Qwen2.5-VL config, for when no local weights can be measured (a
    hub id): embeddings, attention and MLP of every layer, the vision tower and its merger.
    Within about 1% of the published 7B (8.29B) and 3B (3.75B) counts."""
    text, vision = config.text_config, config.vision_config
    h, inter, layers = text.hidden_size, text.intermediate_size, text.num_hidden_layers
    kv = text.num_key_value_heads * (h // text.num_attention_heads)
    embeddings = text.vocab_size * h * (1 if config.tie_word_embeddings else 2)
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter
    vh, vinter = vision.hidden_size, vision.intermediate_size
    merged = vh * vision.spatial_merge_size**2
    tower = vision.depth * (4 * vh * vh + 3 * vh * vinter) + merged * (
        merged + vision.out_hidden_size
    )
    patch = 3 * vision.temporal_patch_size * vision.patch_size**2 * vh
    return int(embeddings + layers * per_layer + tower + patch)


def activation_bytes(text_config: Mapping[str, Any], max_batch_tokens: int, bytes_per: int) -> int:
    """Peak transient memory of one forward pass over `max_batch_tokens` tokens with no KV
    cache kept: the residual stream, one layer's attention and MLP intermediates, and the
    last-position logits only. A deliberate over-estimate (x2) rather than a tight bound."""
    hidden = int(text_config.get("hidden_size", 0))
    inter = int(text_config.get("intermediate_size", 0))
    per_token = (4 * hidden + 3 * inter) * bytes_per
    return 2 * max_batch_tokens * per_token


def check_fits(need: MemoryNeed, free_bytes: int, device: str = "cuda:0") -> None:
    """Raise InsufficientMemory when `need` does not fit in `free_bytes`."""
    if need.total <= free_bytes:
        return
    raise InsufficientMemory(refusal_message(need, free_bytes, device))


def refusal_message(need: MemoryNeed, free_bytes: int, device: str) -> str:
    return (
        f"not loading the model on {device}: it needs about {need.total / GIB:.1f} GiB "
        f"(weights {need.weights / GIB:.1f} GiB + activations {need.activations / GIB:.1f} GiB "
        f"+ runtime {need.runtime / GIB:.1f} GiB) but only {free_bytes / GIB:.1f} GiB is free. "
        "Free the GPU (other processes), use a smaller model (the 3B line), lower "
        "scorer.max_batch_tokens or scorer.max_pixels, or set scorer.device to cpu."
    )


class InsufficientMemory(RuntimeError):
    """The model would not fit in the free GPU memory."""
