"""The SearchBackend contract: what the pipeline needs from a first-stage engine.

A backend turns (index, query text or raw query, filters, window, deadline) into hits with the
engine's score and `_source`, its client's timeouts taken from what is left of the deadline. It
raises the sidecar's errors, never a client library's: NotFound (unknown index), BadQuery (the
engine refused the query, with its reason), EngineUnavailable (cannot connect / server error),
EngineTimeout (deadline passed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from sidecar.deadline import Deadline

Scalar = str | int | float | bool


@dataclass(frozen=True)
class TermFilter:
    """The field equals one of the values."""

    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class RangeFilter:
    """The field lies within the bounds that are set."""

    field: str
    gte: float | None = None
    gt: float | None = None
    lte: float | None = None
    lt: float | None = None


Filter = TermFilter | RangeFilter


@dataclass(frozen=True)
class LegRank:
    """Where a fused hit stood in one leg of a hybrid search: its 1-based rank and the leg's
    own score (BM25, or the vector similarity)."""

    rank: int
    score: float


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    source: Mapping[str, Any]
    index: str = ""
    # a hybrid search's fused hit: its place in each leg that found it (`lexical`, `vector`)
    legs: Mapping[str, LegRank] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    total: int
    took_ms: float = 0.0
    raw: Mapping[str, Any] = field(default_factory=dict)  # engine extras (aggregations, ...)


@dataclass(frozen=True)
class Readiness:
    """How a backend's readiness check went. `check` names the check that decided it
    (`cluster_health`, `index_count`, `ping`); `index` is the index an index-level check read;
    `reason` says why it is not ready, or why a fallback check was used."""

    ready: bool
    check: str
    reason: str = ""
    index: str | None = None


class SearchBackend(Protocol):
    """A first-stage engine. Implementations: embedded (tantivy), elasticsearch, opensearch."""

    name: str

    async def search(
        self,
        index: str,
        query: str | None,
        filters: Sequence[Filter],
        window: int,
        deadline: Deadline,
        raw_query: Mapping[str, Any] | None = None,
        offset: int = 0,
    ) -> SearchResult:
        """Top `window` hits (after skipping `offset`) for the query text (or the raw query
        body), by `deadline` (EngineTimeout when the engine is slower)."""
        ...

    async def ping(self) -> bool:
        """True when the engine answers."""
        ...

    async def close(self) -> None: ...


# Optional capabilities of a backend, checked with isinstance.


@runtime_checkable
class SearchesVectors(Protocol):
    """A backend with a vector leg (k nearest neighbours over the products' vectors)."""

    async def vector_field(self, index: str, field: str, dims: int) -> str | None:
        """None when `index` holds `field` as vectors of `dims` dimensions; else why not (the
        search then stays lexical). Never raises."""
        ...

    async def vector_search(
        self,
        index: str,
        vector: Sequence[float],
        filters: Sequence[Filter],
        k: int,
        deadline: Deadline,
        field: str,
        candidates: int,
    ) -> SearchResult:
        """The `k` products nearest `vector` (cosine, higher first) among those that pass
        `filters`, by `deadline`; the same errors as `SearchBackend.search`."""
        ...


@runtime_checkable
class ChecksReadiness(Protocol):
    """A backend whose readiness says which check it used and why (the engines: cluster
    health, or an index-level check when the key may not read cluster health); /readyz reports
    it. Never raises: a failure is a `Readiness` that is not ready."""

    async def readiness(self) -> Readiness: ...


@runtime_checkable
class ListsDocuments(Protocol):
    """A backend that can list its whole catalog (the embedded engine), for warm-ups."""

    def all_documents(self) -> list[Hit]: ...


@runtime_checkable
class HoldsIndexes(Protocol):
    """A backend that indexes documents given in memory (the embedded engine), for
    evaluation corpora."""

    def add_index(
        self,
        name: str,
        docs: Sequence[Mapping[str, Any]],
        id_field: str = "id",
        search_fields: Mapping[str, float] | None = None,
    ) -> None: ...


@runtime_checkable
class HoldsVectors(Protocol):
    """A backend given its documents' vectors in memory (the embedded engine): its vector leg
    searches them once they are set."""

    def set_vectors(self, name: str, vectors: Sequence[Sequence[float]]) -> None: ...
