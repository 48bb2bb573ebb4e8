"""The Scorer contract: (query, documents, instruction) -> one float in [0, 1] per document.

Every call carries the request's Deadline for the model (what is left, less the answer's
reserve). A scorer that calls another server bounds that call by it; one that computes here may
finish after it, since the scores it gives then still fill the cache (the caller stops waiting
at the deadline, the work does not).

`model_id` is part of every cache key, so two scorers that could disagree must not share one.
Images: a scorer that reads them says so with `reads_images`; the pipeline then loads them
(query and documents) and passes them in `images`, keyed by URL or by the query's image hash.
A document whose image could not be loaded is scored on its text alone.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from PIL.Image import Image

    from sidecar.deadline import Deadline
    from sidecar.documents import Document
    from sidecar.query import Query
    from sidecar.scoring.batching import MicroBatcher


@dataclass
class ModelState:
    """What /readyz and the playground show about the model."""

    status: str = "loading"  # loading | ready | failed
    reason: str = ""
    progress: float = 0.0  # 0..1 while loading
    device: str = ""
    detail: Mapping[str, Any] | None = None

    @property
    def ready(self) -> bool:
        return self.status == "ready"


class Scorer(Protocol):
    model_id: str
    reads_images: bool
    state: ModelState

    async def load(self) -> None:
        """Load weights and run a warm-up pass; sets `state`. Never raises: a failure is a state."""
        ...

    async def score(
        self,
        query: Query,
        documents: Sequence[Document],
        instruction: str,
        images: Mapping[str, Image] | None = None,
        *,
        deadline: Deadline,
    ) -> list[float]:
        """One relevance score in [0, 1] per document, in order, meant by `deadline`."""
        ...

    async def close(self) -> None: ...


class Scores(list[float]):
    """Scores that carry flags: what a scorer can say about single documents (the remote
    scorer's peer could not load an image, so that score was made on text alone). A plain list
    of floats means "no flags"; the pipeline flags these documents and does not cache them."""

    def __init__(self, values: Sequence[float] = (), flags: Mapping[int, list[str]] | None = None):
        super().__init__(values)
        self.flags: dict[int, list[str]] = dict(flags or {})


# Optional capabilities: a scorer has them or not, and callers check with isinstance.


@runtime_checkable
class IdentifiesScores(Protocol):
    """A scorer that names everything that changes its scores (sidecar.scoring.identity); the
    pair-score cache key uses it. Every shipped scorer has one; a scorer without it is keyed by
    its `model_id` alone."""

    score_identity: str


# Capabilities a scorer was found to have. isinstance against a runtime Protocol looks up every
# member (~15 us on Python 3.11) and the request path asks a few times per request; a scorer
# does not lose an attribute it has, so a capability found once is remembered (one not found is
# looked for again: a scorer may learn one at load).
_FOUND: weakref.WeakKeyDictionary[Any, set[type]] = weakref.WeakKeyDictionary()


def _has(scorer: Any, capability: type) -> bool:
    found = _FOUND.get(scorer)
    if found is not None and capability in found:
        return True
    if not isinstance(scorer, capability):
        return False
    try:
        _FOUND.setdefault(scorer, set()).add(capability)
    except TypeError:  # not weakly referenceable: looked for again next time
        pass
    return True


def identity_of(scorer: Scorer) -> str:
    if _has(scorer, IdentifiesScores):
        return str(scorer.score_identity)  # type: ignore[attr-defined]
    return scorer.model_id


@runtime_checkable
class DeclaresLanguages(Protocol):
    """A scorer that says which languages it reads (sidecar.writing_systems); one that does not is
    trusted with any text."""

    languages: tuple[str, ...]


def languages_of(scorer: Scorer) -> tuple[str, ...]:
    """What `scorer` reads; ("*",) for one that does not say."""
    if _has(scorer, DeclaresLanguages):
        return tuple(scorer.languages)  # type: ignore[attr-defined]
    return ("*",)


@runtime_checkable
class SharesEmbeddings(Protocol):
    """A scorer whose document embeddings can be shared by replicas through a cache that holds
    bytes (sidecar.cache.base.HoldsBytes): the bi-encoder."""

    def share_embeddings(self, store: Any, prefix: str, ttl_s: int) -> None: ...

    async def read_shared(self, documents: Sequence[Document]) -> list[str]:
        """Load the shared embeddings of `documents`; the keys of those nobody had."""
        ...

    def share(self, keys: Sequence[str]) -> None:
        """Share the embeddings of these keys (encoded here since), in the background."""
        ...

    def embedding_stats(self) -> Mapping[str, int]:
        """read, written and failed (not stored by the shared cache) and encoded (here); empty
        when not sharing."""
        ...

    def share_failure(self) -> str | None:
        """Why the first write to the shared cache that failed did; None when none has."""
        ...


@runtime_checkable
class WarmsDocuments(Protocol):
    """A scorer whose document side does not depend on the query (a bi-encoder): documents can
    be encoded ahead of traffic."""

    def warm_documents(
        self,
        documents: Sequence[Document],
        chunk: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Encode `documents` (in a worker thread); returns how many were new."""
        ...


@runtime_checkable
class EmbedsText(Protocol):
    """A bi-encoder whose vectors can search an index (the hybrid first stage's vector leg):
    normalised vectors of `dimensions`, documents and queries in one space. A query is
    encoded once and kept in the scorer's own query cache, where its scoring finds it."""

    dimensions: int

    async def embed_query(self, text: str) -> list[float]: ...

    def document_vectors(self, documents: Sequence[Document]) -> list[list[float]]: ...


@runtime_checkable
class FetchesImagesRemotely(Protocol):
    """A scorer that reads images but is given them as URLs: its peer fetches them, so the
    sidecar loads none itself."""

    fetches_images_remotely: bool


@runtime_checkable
class Batched(Protocol):
    """A scorer whose forward passes go through a MicroBatcher (metrics read its stats and
    observe its batches); `batcher` is None when batching is switched off."""

    @property
    def batcher(self) -> MicroBatcher[Any, Any] | None: ...


@runtime_checkable
class CallsModelServer(Protocol):
    """A scorer whose model runs on a server it calls (vLLM): metrics read how its windows went
    (`ok`, `failed`, `refused` by its open breaker, `overloaded`) and its breaker's state."""

    def server_stats(self) -> Mapping[str, Any]: ...
