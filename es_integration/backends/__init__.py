"""SearchBackend implementations; `build_backend` picks one from the engine settings."""

from es_integration.backends.base import (
    Filter,
    Hit,
    RangeFilter,
    SearchBackend,
    SearchResult,
    TermFilter,
)

__all__ = ["Filter", "Hit", "RangeFilter", "SearchBackend", "SearchResult", "TermFilter"]
