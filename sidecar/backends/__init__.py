"""First-stage engines: the SearchBackend contract and its implementations (embedded tantivy,
Elasticsearch, OpenSearch), the query DSL the two real engines share, and index loading.
`sidecar.wiring.build_backend` picks one from the engine settings."""

from sidecar.backends.base import (
    Filter,
    Hit,
    RangeFilter,
    SearchBackend,
    SearchResult,
    TermFilter,
)

__all__ = ["Filter", "Hit", "RangeFilter", "SearchBackend", "SearchResult", "TermFilter"]
