"""Lychee-rerank-mm (Qwen2.5-VL fine-tuned as a yes/no judge) as a Scorer.

Score = P(yes) from a softmax over the `no` and `yes` logits at the last position. Batches are
left-padded, so the last position is every row's real last token (with right padding and
`logits[:, -1]` the scores would be wrong).

The seam follows infinity's three steps: `prepare` (render, process images, tokenize; runs in a
worker thread per request, so it overlaps the current forward pass) -> `forward` (one padded
batch, no grad, under the micro-batcher) -> floats. Qwen2.5-VL's processor class needs
torchvision, so images go through the PIL image processor and each `<|image_pad|>` is expanded
here to grid_t*h*w // merge_size**2 tokens.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar.scoring import device as device_mod
from sidecar.scoring import prompt
from sidecar.scoring.base import ModelState
from sidecar.scoring.batching import MicroBatcher
from sidecar.scoring.identity import folder_fingerprint, score_identity

if TYPE_CHECKING:
    from PIL.Image import Image

    from sidecar.deadline import Deadline
    from sidecar.documents import Document
    from sidecar.query import Query

log = logging.getLogger(__name__)

MODEL_ID = "lychee-rerank-mm"


@dataclass
class Prepared:
    """One (query, document) pair, ready for a batch. Images stay PIL images (shared between
    the pairs of a request) until their batch runs, so queued pairs hold no pixel tensors."""

    input_ids: list[int]
    images: tuple[Image, ...] = ()  # in prompt order: the query's, then the document's

    @property
    def tokens(self) -> int:
        return len(self.input_ids)


class LycheeScorer:
    reads_images = True

    def __init__(
        self,
        model_path: str,
        *,
        max_doc_chars: int = 512,
        device: str = "auto",
        min_pixels: int = 4 * 28 * 28,
        max_pixels: int = 1280 * 28 * 28,
        batch_size: int = 32,
        max_batch_tokens: int = 16_384,
        max_wait_ms: float = 2.0,
        max_queue: int = 4096,
        attn_implementation: str | None = None,
        languages: Sequence[str] | None = None,
    ) -> None:
        self.model_path = model_path
        # Qwen2.5-VL reads Chinese as well as English (Lychee's own card names English as its
        # training language, so its Chinese quality is unmeasured)
        self.languages = tuple(languages or ("en", "zh"))
        name = os.path.basename(os.path.normpath(model_path)) or model_path
        self.model_id = f"{MODEL_ID}@{name}:px{max_pixels}"  # resolution changes the scores
        self.max_doc_chars = max_doc_chars
        self.device_setting = device
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.attn_override = attn_implementation
        self.state = ModelState()
        self._weights = folder_fingerprint(model_path)
        self.score_identity = self._identity(device)  # refined with the real dtype at load
        self.batcher: MicroBatcher[Prepared, float] = MicroBatcher(
            self.forward,
            max_batch=batch_size,
            max_tokens=max_batch_tokens,
            max_wait_s=max_wait_ms / 1000,
            max_queue=max_queue,
            on_oom=self._release_cache,
        )
        self.attention = ""
        self.device = "cpu"
        self._model: Any = None
        self._tokenizer: Any = None
        self._processor: Any = None
        self._dtype: Any = None
        self._yes = self._no = -1
        self._pad = 0
        self._merge = 2
        self._lock = threading.Lock()

    # ----- loading -------------------------------------------------------------------------
    async def load(self) -> None:
        try:
            await asyncio.to_thread(self.load_sync)
        except Exception as exc:  # a failed load is a state /readyz shows, not a crash
            log.error("Lychee scorer failed to load: %s", exc)
            self.state = ModelState(status="failed", reason=f"{exc.__class__.__name__}: {exc}")

    def load_sync(self) -> None:
        import torch
        from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil,
        )

        started = time.perf_counter()
        self.device, self._dtype = device_mod.choose_device(self.device_setting)
        self.score_identity = self._identity(self._dtype)
        self.state = ModelState(status="loading", progress=0.05, device=self.device)
        config = Qwen2_5_VLConfig.from_pretrained(self.model_path)
        if self.device.startswith("cuda"):
            self._check_gpu_memory(config, torch)
        self.attention = device_mod.choose_attention(self.device.split(":")[0], self.attn_override)
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self._processor = Qwen2VLImageProcessorPil.from_pretrained(self.model_path)
        self._processor.size = {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}
        self._merge = int(getattr(self._processor, "merge_size", 2))
        self._yes, self._no = self._single_token("yes"), self._single_token("no")
        pad = self._tokenizer.pad_token_id
        self._pad = int(pad if pad is not None else self._tokenizer.eos_token_id)
        self.state.progress = 0.2
        model: Any = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            self.model_path, dtype=self._dtype, attn_implementation=self.attention
        )
        self._model = model.to(self.device).eval()
        self.state.progress = 0.9
        self._warm_up()
        self.state = ModelState(
            status="ready",
            progress=1.0,
            device=self.device,
            detail={
                "model_path": self.model_path,
                "dtype": str(self._dtype).removeprefix("torch."),
                "attention": self.attention,
                "max_pixels": self.max_pixels,
                "load_s": round(time.perf_counter() - started, 2),
            },
        )
        log.info(
            "scorer ready",
            extra={"model": self.model_id, "device": self.device, "attention": self.attention},
        )

    def attach(
        self,
        model: Any,
        processor: Any,
        *,
        yes_id: int,
        no_id: int,
        pad_id: int,
        device: str,
        dtype: Any,
        tokenizer: Any = None,
    ) -> None:
        """Use an already built model (benchmarks with random weights); `prepare` needs a
        tokenizer, `forward` does not."""
        self._model, self._processor, self._tokenizer = model, processor, tokenizer
        self._yes, self._no, self._pad = yes_id, no_id, pad_id
        self.device, self._dtype = device, dtype
        self.score_identity = self._identity(dtype)
        self._merge = int(getattr(processor, "merge_size", 2))
        self.state = ModelState(status="ready", progress=1.0, device=device)

    def _identity(self, dtype: Any) -> str:
        """Everything that changes this scorer's scores (see sidecar.scoring.identity)."""
        return score_identity(
            model=MODEL_ID,
            weights=self._weights,
            prompt=prompt.PROMPT_VERSION,
            max_doc_chars=self.max_doc_chars,
            min_pixels=self.min_pixels,
            max_pixels=self.max_pixels,
            dtype=str(dtype).removeprefix("torch."),
        )

    def _check_gpu_memory(self, config: Any, torch: Any) -> None:
        index = torch.device(self.device).index or 0
        free, _total = torch.cuda.mem_get_info(index)
        bytes_per = torch.tensor([], dtype=self._dtype).element_size()
        weights = device_mod.weights_bytes(Path(self.model_path), bytes_per)
        if weights == 0:  # a hub id: nothing on disk to measure yet
            weights = device_mod.params_from_config(config) * bytes_per
        need = device_mod.MemoryNeed(
            weights=weights,
            activations=device_mod.activation_bytes(
                config.text_config.to_dict(), self.batcher.max_tokens, bytes_per
            ),
        )
        device_mod.check_fits(need, free, f"cuda:{index}")

    def _single_token(self, word: str) -> int:
        ids = self._tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"the tokenizer splits {word!r} into {len(ids)} tokens; expected one")
        return int(ids[0])

    def _warm_up(self) -> None:
        from PIL import Image

        picture = Image.new("RGB", (56, 56), (200, 60, 60))
        text = self.prepare_pair("warm-up", None, "warm-up", "warm-up document", None)
        with_image = self.prepare_pair("warm-up", picture, "warm-up", "warm-up", picture)
        self.forward([text, with_image])

    def _release_cache(self) -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ----- scoring ---------------------------------------------------------------------------
    async def score(
        self,
        query: Query,
        documents: Sequence[Document],
        instruction: str,
        images: Mapping[str, Image] | None = None,
        *,
        deadline: Deadline,  # computed here: a late score still fills the cache (scoring.base)
    ) -> list[float]:
        if self._model is None:
            raise RuntimeError(f"model {self.model_id} is not loaded ({self.state.status})")
        if not documents:
            return []
        pairs = await asyncio.to_thread(self.prepare, query, documents, instruction, images or {})
        return await self.batcher.submit(pairs, [p.tokens for p in pairs])

    def prepare(
        self,
        query: Query,
        documents: Sequence[Document],
        instruction: str,
        images: Mapping[str, Image],
    ) -> list[Prepared]:
        query_key = query.image_url or (query.image_hash if query.image_bytes else None)
        query_image = images.get(query_key) if query_key else None
        return [
            self.prepare_pair(
                instruction,
                query_image,
                query.text,
                doc.text(self.max_doc_chars),
                images.get(doc.image_url) if doc.image_url else None,
            )
            for doc in documents
        ]

    def prepare_pair(
        self,
        instruction: str,
        query_image: Image | None,
        query_text: str,
        doc_text: str,
        doc_image: Image | None,
    ) -> Prepared:
        """Render, expand image placeholders and tokenize one pair."""
        pictures = tuple(img for img in (query_image, doc_image) if img is not None)
        text = prompt.render(
            instruction, query_text, query_image is not None, doc_text, doc_image is not None
        )
        counts = [self.image_tokens(img) for img in pictures]
        ids = self._tokenizer.encode(
            prompt.expand_image_pads(text, counts), add_special_tokens=False
        )
        return Prepared(list(ids), pictures)

    def image_tokens(self, image: Image) -> int:
        """Language-model tokens of one image: its patch grid after the processor's resize,
        divided by merge_size**2."""
        patches = self._processor.get_number_of_image_patches(image.height, image.width, {})
        return int(patches) // self._merge**2

    def _pixels(self, pairs: list[Prepared]) -> dict[str, Any]:
        """pixel_values and image_grid_thw of every image of a batch, in prompt order; an image
        shared by several pairs (the query's) is processed once."""
        import torch

        unique: dict[int, Image] = {}
        for pair in pairs:
            for image in pair.images:
                unique.setdefault(id(image), image)
        if not unique:
            return {}
        out = self._processor(
            images=[img.convert("RGB") for img in unique.values()], return_tensors="pt"
        )
        grids = out["image_grid_thw"]
        pieces = torch.split(out["pixel_values"], grids.prod(-1).tolist())
        index = {key: i for i, key in enumerate(unique)}
        order = [index[id(image)] for pair in pairs for image in pair.images]
        return {
            "pixel_values": torch.cat([pieces[i] for i in order]).to(self.device, self._dtype),
            "image_grid_thw": grids[order].to(self.device),
        }

    def forward(self, pairs: list[Prepared]) -> list[float]:
        """P(yes) for a left-padded batch of prepared pairs (blocking; one at a time)."""
        import torch

        longest = max(p.tokens for p in pairs)
        input_ids = torch.full((len(pairs), longest), self._pad, dtype=torch.long)
        mask = torch.zeros((len(pairs), longest), dtype=torch.long)
        for row, pair in enumerate(pairs):
            input_ids[row, longest - pair.tokens :] = torch.tensor(pair.input_ids)
            mask[row, longest - pair.tokens :] = 1
        extra = self._pixels(pairs)
        with self._lock, torch.inference_mode():
            out = self._model(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                use_cache=False,
                logits_to_keep=1,
                **extra,
            )
            pair_logits = out.logits[:, -1, [self._no, self._yes]].float()
            scores = torch.softmax(pair_logits, dim=-1)[:, 1].cpu().tolist()
        del out, extra, input_ids, mask
        return [float(s) for s in scores]

    async def close(self) -> None:
        await self.batcher.close()
        self._model = None
        self._release_cache()
