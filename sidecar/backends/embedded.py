"""The no-service default engine: named in-memory indexes of JSONL catalogs
(`embedded_index.EmbeddedIndex`, BM25 with tantivy), searched off the event loop.

For the drop-in demo it also answers a read-only subset of Elasticsearch's API in its shapes:
cluster info (`GET /`), count, get by id (and many ids), the mapping, index existence and
cluster health (`EmbeddedBackend.info`, `count`, `get`, `mapping`, `exists`, `health`).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from sidecar.backends.base import Filter, Hit, SearchResult
from sidecar.backends.embedded_index import EmbeddedIndex
from sidecar.deadline import Deadline
from sidecar.errors import InvalidRequest, NotFound


class EmbeddedBackend:
    """SearchBackend over named in-memory indexes; the demo catalog is loaded as `products`."""

    name = "embedded"

    def __init__(self, search_fields: Mapping[str, float]) -> None:
        self.search_fields = dict(search_fields)
        self._indexes: dict[str, EmbeddedIndex] = {}

    def add_index(
        self,
        name: str,
        docs: Sequence[Mapping[str, Any]],
        id_field: str = "id",
        search_fields: Mapping[str, float] | None = None,
    ) -> None:
        self._indexes[name] = EmbeddedIndex(docs, search_fields or self.search_fields, id_field)

    def add_jsonl(self, name: str, path: Path, id_field: str = "id") -> None:
        self.add_index(name, read_jsonl(path), id_field)

    def all_documents(self) -> list[Hit]:
        """Every document of every index, as hits (for warming document caches)."""
        return [hit for index in self._indexes.values() for hit in index.all_hits()]

    def index_hits(self, name: str) -> list[Hit]:
        """Every document of index `name`, as hits, in catalog order."""
        return self._index(name).all_hits()

    def indexes(self) -> dict[str, int]:
        return {name: len(index) for name, index in self._indexes.items()}

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
        found = self._indexes.get(index)
        if found is None:
            raise NotFound(
                f"no index named {index!r} in the embedded engine",
                field="index",
                known=sorted(self._indexes),
            )
        if raw_query is not None:
            raise InvalidRequest(
                "the embedded engine takes query text, not a raw query body", field="raw_query"
            )
        # tantivy searches in native code: off the event loop, so other requests go on meanwhile;
        # a search cannot be cut there, so `deadline` is kept by the caller's wait
        return await asyncio.to_thread(found.search, query, filters, window, offset)

    def set_vectors(self, name: str, vectors: Sequence[Sequence[float]]) -> None:
        """The vectors of index `name`'s documents, in catalog order: its vector leg."""
        self._index(name).set_vectors(vectors)

    async def vector_field(self, index: str, field: str, dims: int) -> str | None:
        found = self._indexes.get(index)
        if found is None:
            return f"no index named {index!r}"
        have = found.vector_dims
        if have is None:
            return f"index {index!r} holds no vectors yet (the catalog is encoded at start-up)"
        if have != dims:
            return f"index {index!r} holds vectors of {have} dimensions, not {dims}"
        return None

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
        found = self._index(index)  # the field is the index's one vector per document
        return await asyncio.to_thread(found.vector_search, vector, filters, k)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._indexes.clear()

    # -- the read-only Elasticsearch subset of the drop-in demo ------------------------------

    def info(self, major: int = 8) -> dict[str, Any]:
        """`GET /` as Elasticsearch answers it (clients read `version.number`); `major` is the
        version the caller's client asked to be compatible with. `version.distribution` is
        OpenSearch's field: its typed clients (opensearch-java) require it, Elasticsearch's
        clients ignore it, so one answer serves both families."""
        return {
            "name": "rerank-sidecar",
            "cluster_name": "rerank-sidecar-embedded",
            "cluster_uuid": _CLUSTER_UUID,
            "version": {
                "number": f"{major}.0.0",
                "distribution": "rerank-sidecar-embedded",
                "build_flavor": "default",
                "build_type": "embedded",
                "build_hash": "tantivy",
                "build_date": "1970-01-01T00:00:00.000Z",
                "build_snapshot": False,
                "lucene_version": f"tantivy {_package_version('tantivy')}",
                "minimum_wire_compatibility_version": f"{major - 1}.17.0",
                "minimum_index_compatibility_version": f"{major - 1}.0.0",
            },
            "tagline": "You Know, for Search",
        }

    def health(self) -> dict[str, Any]:
        """`GET /_cluster/health`: one node, always green."""
        shards = len(self._indexes)
        return {
            "cluster_name": "rerank-sidecar-embedded",
            "status": "green",
            "timed_out": False,
            "number_of_nodes": 1,
            "number_of_data_nodes": 1,
            "active_primary_shards": shards,
            "active_shards": shards,
            "relocating_shards": 0,
            "initializing_shards": 0,
            "unassigned_shards": 0,
            "delayed_unassigned_shards": 0,
            "number_of_pending_tasks": 0,
            "number_of_in_flight_fetch": 0,
            "task_max_waiting_in_queue_millis": 0,
            "active_shards_percent_as_number": 100.0,
        }

    def exists(self, index: str) -> bool:
        return all(name in self._indexes for name in index.split(","))

    def count(self, index: str, text: str | None) -> dict[str, Any]:
        """`_count` of the documents matching the query text (all of them without one)."""
        found = self._index(index)
        total = len(found) if not (text or "").strip() else found.search(text, (), 1).total
        return {"count": total, "_shards": dict(ONE_SHARD)}

    def get(self, index: str, doc_id: str) -> dict[str, Any]:
        """`GET /{index}/_doc/{id}`: the document with `found: true`, or `found: false`."""
        source = self._index(index).source(doc_id)
        if source is None:
            return {"_index": index, "_id": doc_id, "found": False}
        return {
            "_index": index,
            "_id": doc_id,
            "_version": 1,
            "_seq_no": 0,
            "_primary_term": 1,
            "found": True,
            "_source": dict(source),
        }

    def mapping(self, index: str) -> dict[str, Any]:
        """`GET /{index}/_mapping` (a comma list of names too)."""
        return {
            name: {"mappings": {"properties": self._index(name).properties()}}
            for name in index.split(",")
        }

    def _index(self, name: str) -> EmbeddedIndex:
        found = self._indexes.get(name)
        if found is None:
            raise NotFound(
                f"no such index [{name}]",
                field="index",
                engine_error="index_not_found_exception",
                known=sorted(self._indexes),
            )
        return found


ONE_SHARD = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}
# One stable cluster id, as a real cluster keeps its own (22 characters like Elasticsearch's).
_CLUSTER_UUID = uuid.uuid5(uuid.NAMESPACE_URL, "rerank-sidecar/embedded").hex[:22]


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
