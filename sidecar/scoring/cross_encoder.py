"""A local cross-encoder as a Scorer: any folder in sentence-transformers' CrossEncoder layout (a
Hugging Face sequence-classification checkpoint such as bge-reranker-v2-m3 or
cross-encoder/ms-marco-MiniLM-L6-v2), read from disk only, run in this process on the CPU (or a
GPU when `scorer.device` names one).

The model reads (query text, document text) as a tokenizer text pair, the document's text being
`Document.text` (title and selling points, as every text scorer reads it), the pair cut to
`max_length` tokens the way sentence-transformers cuts it (longest first). Each pair is one item
of the micro-batcher: tokenized per request in a worker thread, padded into length-sorted batches
on the batcher's own thread. Right padding is right here: a classification head reads the first
position, and the attention mask hides the padding.

Score in [0, 1], as sentence-transformers' CrossEncoder defines the checkpoint's activation
(see `named_activation`), within the contract's range:
- one label (a relevance logit): sigmoid of the logit; a checkpoint that names Identity (raw
  logits) is read through the sigmoid too: the order is the same, and the contract needs [0, 1];
- two labels (not relevant, relevant): softmax's second class; a named Sigmoid: the sigmoid of
  the second logit, as sentence-transformers' column 1 would be;
- anything else (more labels, another activation, a module chain after the model, a
  checkpoint that is no sequence classifier) is refused at load: a failed state naming it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sidecar.scoring import device as device_mod
from sidecar.scoring.base import ModelState
from sidecar.scoring.batching import MicroBatcher
from sidecar.scoring.identity import folder_fingerprint, score_identity

if TYPE_CHECKING:
    from PIL.Image import Image

    from sidecar.deadline import Deadline
    from sidecar.documents import Document
    from sidecar.query import Query

log = logging.getLogger(__name__)

MODEL_ID = "cross-encoder"
# How a (query, document) pair becomes the model's input: the query and Document.text as a
# tokenizer text pair, truncated longest first. A change here changes every score: bump it.
FORMAT_VERSION = "text-pair-v1"
# A tokenizer without a limit of its own says this (transformers' VERY_LARGE_INTEGER is 1e30).
_NO_LIMIT = 1_000_000


@dataclass(frozen=True)
class Head:
    """How the classification head's logits become a score in [0, 1]."""

    labels: int  # 1: a relevance logit; 2: (not relevant, relevant)
    activation: str  # "sigmoid" | "softmax"
    named: str | None = None  # the activation the checkpoint's files name, if any

    @property
    def rule(self) -> str:
        """The score rule in words, for the score identity and /readyz."""
        if self.activation == "softmax":
            return "softmax(logits)[1]"
        return f"sigmoid(logits[{self.labels - 1}])"


def read_head(folder: str | Path, labels: int) -> Head:
    """The score rule for a head of `labels` labels and the activation the folder's files name
    (see the module's docstring); ValueError for what this scorer does not run."""
    named = named_activation(Path(folder))
    if labels not in (1, 2):
        raise ValueError(
            f"the head has {labels} labels; a cross-encoder has 1 (a relevance logit) "
            "or 2 (not relevant, relevant)"
        )
    kind = named.rsplit(".", 1)[-1] if named else None
    if named is not None and (not named.startswith("torch.") or kind not in _ACTIVATIONS):
        raise ValueError(
            f"the checkpoint names the activation {named!r}; this scorer runs "
            f"{', '.join(sorted(_ACTIVATIONS))} (and no code from the folder)"
        )
    if kind == "Sigmoid":
        return Head(labels, "sigmoid", named)
    if kind == "Softmax" and labels == 1:
        raise ValueError("a softmax over a single logit is 1 for every pair")
    # Softmax, Identity (raw logits) or nothing named: sentence-transformers' default, in [0, 1]
    return Head(labels, "sigmoid" if labels == 1 else "softmax", named)


_ACTIVATIONS = frozenset({"Sigmoid", "Softmax", "Identity"})


def named_activation(folder: Path) -> str | None:
    """The activation sentence-transformers would load for this folder: in a folder it saved
    itself (one with modules.json), config_sentence_transformers.json's `activation_fn`; else
    config.json's `sentence_transformers.activation_fn` (version 4 on) or
    `sbert_ce_default_activation_function` (before 4)."""
    if (folder / "modules.json").is_file():  # sentence-transformers reads its config only then
        st_config = _json(folder / "config_sentence_transformers.json")
        if st_config.get("activation_fn"):
            return str(st_config["activation_fn"])
    config = _json(folder / "config.json")
    nested = config.get("sentence_transformers")
    if isinstance(nested, dict) and nested.get("activation_fn"):
        return str(nested["activation_fn"])
    old = config.get("sbert_ce_default_activation_function")
    return str(old) if old else None


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def check_layout(folder: Path) -> None:
    """Refuse a sentence-transformers folder whose modules do more than the one model at its
    root (a pooling or logit module after it would change the scores this scorer computes)."""
    modules = _json_list(folder / "modules.json")
    if len(modules) > 1 or any(m.get("path") not in ("", None) for m in modules):
        chain = ", ".join(str(m.get("type", "?")).rsplit(".", 1)[-1] for m in modules)
        raise ValueError(
            f"{folder} chains sentence-transformers modules ({chain}); this scorer runs a single "
            "sequence-classification model at the folder's root"
        )


def _json_list(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []


@dataclass(frozen=True)
class Pair:
    """One tokenized (query, document) pair, ready for a batch."""

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...] | None  # None for models without segment ids (XLM-R)

    @property
    def tokens(self) -> int:
        return len(self.input_ids)


class CrossEncoderScorer:
    reads_images = False

    def __init__(
        self,
        model_path: str,
        *,
        max_length: int = 512,
        max_doc_chars: int = 512,
        device: str = "auto",
        batch_size: int = 32,
        max_batch_tokens: int = 16_384,
        micro_batching: bool = True,
        max_wait_ms: float = 2.0,
        max_queue: int = 4096,
        languages: Sequence[str] | None = None,
    ) -> None:
        self.model_path = model_path
        # Most cross-encoders (the ms-marco family) were trained on English; a multilingual one
        # (bge-reranker-v2-m3) is declared by the operator: scorer.languages: ["*"]
        self.languages = tuple(languages or ("en",))
        name = os.path.basename(os.path.normpath(model_path)) or model_path
        self.model_id = f"{MODEL_ID}@{name}"
        self.max_length = max_length
        self.max_doc_chars = max_doc_chars
        self.batch_size = batch_size
        self.device_setting = device
        self.device = "cpu"
        self.state = ModelState()
        self.head: Head | None = None
        self._weights = folder_fingerprint(model_path)
        self._dtype: Any = None
        self._limit = max_length  # max_length within what the model and tokenizer take
        self.score_identity = self._identity()  # completed at load: dtype and score rule
        self.batcher: MicroBatcher[Pair, float] | None = (
            MicroBatcher(
                self.forward,
                max_batch=batch_size,
                max_tokens=max_batch_tokens,
                max_wait_s=max_wait_ms / 1000,
                max_queue=max_queue,
                on_oom=self._release_cache,
            )
            if micro_batching
            else None
        )
        self._model: Any = None
        self._tokenizer: Any = None
        self._pad = 0
        self._tokenize_lock = threading.Lock()  # a fast tokenizer is not for two threads at once
        self._forward_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None  # unbatched scoring's one thread

    def _identity(self) -> str:
        """Everything that changes this scorer's scores (see sidecar.scoring.identity)."""
        return score_identity(
            model=MODEL_ID,
            weights=self._weights,
            format=FORMAT_VERSION,
            max_length=self._limit,
            max_doc_chars=self.max_doc_chars,
            dtype=str(self._dtype).removeprefix("torch.") if self._dtype is not None else None,
            score=self.head.rule if self.head is not None else None,
        )

    # ----- loading -------------------------------------------------------------------------
    async def load(self) -> None:
        try:
            await asyncio.to_thread(self.load_sync)
        except Exception as exc:  # a failed load is a state /readyz shows, not a crash
            log.error("cross-encoder failed to load: %s", exc)
            self.state = ModelState(status="failed", reason=f"{exc.__class__.__name__}: {exc}")

    def load_sync(self) -> None:
        started = time.perf_counter()
        folder = Path(self.model_path)
        if not folder.is_dir():  # never a hub name: nothing is downloaded at run time
            raise FileNotFoundError(
                f"no cross-encoder folder at {self.model_path} (scorer.model_path must name a "
                "local folder holding the checkpoint)"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

        self.device, self._dtype = device_mod.choose_device(self.device_setting)
        self.state = ModelState(status="loading", progress=0.1, device=self.device)
        check_layout(folder)
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        architectures = list(getattr(config, "architectures", None) or [])
        if not any(a.endswith("ForSequenceClassification") for a in architectures):
            raise ValueError(
                f"{self.model_path} is not a sequence-classification checkpoint (architectures: "
                f"{', '.join(architectures) or 'none named'}); its head would be random"
            )
        self.head = read_head(folder, int(config.num_labels))
        self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        self._limit = min(self.max_length, self._model_limit(config))
        pad = self._tokenizer.pad_token_id
        self._pad = int(pad if pad is not None else 0)
        self.state.progress = 0.3
        model: Any = AutoModelForSequenceClassification.from_pretrained(
            folder, local_files_only=True, dtype=self._dtype
        )
        self._model = model.to(self.device).eval()
        self.score_identity = self._identity()
        self.state.progress = 0.9
        self.forward(self.tokenize("warm-up", ["warm-up document"]))
        self.state = ModelState(
            status="ready",
            progress=1.0,
            device=self.device,
            detail={
                "model_path": self.model_path,
                "dtype": str(self._dtype).removeprefix("torch."),
                "labels": self.head.labels,
                "score": self.head.rule,
                "max_length": self._limit,
                "load_s": round(time.perf_counter() - started, 2),
            },
        )
        log.info(
            "scorer ready",
            extra={"model": self.model_id, "device": self.device, "score": self.head.rule},
        )

    def _model_limit(self, config: Any) -> int:
        """The longest pair the tokenizer and the position embeddings take."""
        limit = int(getattr(self._tokenizer, "model_max_length", _NO_LIMIT) or _NO_LIMIT)
        if limit >= _NO_LIMIT:  # no limit in the tokenizer's files: the position embeddings'
            limit = int(getattr(config, "max_position_embeddings", 512) or 512)
        return limit

    def _release_cache(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # ----- scoring ---------------------------------------------------------------------------
    async def score(
        self,
        query: Query,
        documents: Sequence[Document],
        instruction: str,
        images: Mapping[str, Image] | None = None,
        *,
        deadline: Deadline,
    ) -> list[float]:
        """Scores in order. `instruction` is not read (a cross-encoder takes none; it is in the
        cache key all the same). `deadline` is not enforced here: the pipeline stops waiting at
        it and keeps late scores for the cache (its single flight may serve other requests)."""
        if self._model is None:
            raise RuntimeError(f"model {self.model_id} is not loaded ({self.state.status})")
        if not documents:
            return []
        texts = [doc.text(self.max_doc_chars) for doc in documents]
        pairs = await asyncio.to_thread(self.tokenize, query.text, texts)
        if self.batcher is not None:
            return await self.batcher.submit(pairs, [p.tokens for p in pairs])
        loop = asyncio.get_running_loop()  # on the scorer's own thread, like the batcher's
        return await loop.run_in_executor(self._unbatched(), self.score_pairs, pairs)

    def tokenize(self, query: str, texts: Sequence[str]) -> list[Pair]:
        """The pairs (query, text) as the model reads them, cut to max_length longest first (as
        sentence-transformers' CrossEncoder cuts them)."""
        with self._tokenize_lock:
            encoded = self._tokenizer(
                [query] * len(texts), list(texts), truncation=True, max_length=self._limit
            )
        types = encoded.get("token_type_ids")
        return [
            Pair(tuple(ids), tuple(types[i]) if types is not None else None)
            for i, ids in enumerate(encoded["input_ids"])
        ]

    def score_pairs(self, pairs: Sequence[Pair]) -> list[float]:
        """Unbatched scoring: the pairs in batches of batch_size, in order (blocking)."""
        scores: list[float] = []
        for start in range(0, len(pairs), self.batch_size):
            scores.extend(self.forward(list(pairs[start : start + self.batch_size])))
        return scores

    def _unbatched(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cross-encoder")
        return self._executor

    def forward(self, pairs: list[Pair]) -> list[float]:
        """Scores of a right-padded batch of pairs (blocking; one pass at a time)."""
        import torch

        assert self.head is not None
        longest = max(p.tokens for p in pairs)
        ids = torch.full((len(pairs), longest), self._pad, dtype=torch.long)
        mask = torch.zeros((len(pairs), longest), dtype=torch.long)
        types = torch.zeros((len(pairs), longest), dtype=torch.long)
        for row, pair in enumerate(pairs):
            ids[row, : pair.tokens] = torch.tensor(pair.input_ids)
            mask[row, : pair.tokens] = 1
            if pair.token_type_ids is not None:
                types[row, : pair.tokens] = torch.tensor(pair.token_type_ids)
        inputs = {"input_ids": ids, "attention_mask": mask}
        if pairs[0].token_type_ids is not None:
            inputs["token_type_ids"] = types
        with self._forward_lock, torch.inference_mode():
            logits = self._model(**{k: v.to(self.device) for k, v in inputs.items()}).logits
            scores = to_unit(logits.float(), self.head).cpu().tolist()
        return [_finite(s) for s in scores]

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        self._model = None
        self._release_cache()


def to_unit(logits: Any, head: Head) -> Any:
    """The head's logits (a float tensor, one row per pair) as one score in [0, 1] per row."""
    import torch

    if head.activation == "softmax":
        return torch.softmax(logits, dim=-1)[:, 1]
    return torch.sigmoid(logits[:, head.labels - 1])


def _finite(score: float) -> float:
    """A NaN (a broken checkpoint, an overflowing half-precision pass) is no score in [0, 1]."""
    if math.isnan(score):
        raise ValueError("the model gave NaN for a pair")
    return float(score)
