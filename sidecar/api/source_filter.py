"""`_source` filtering as the engines do it: includes/excludes, dotted paths, wildcards.

The drop-in endpoint fetches the fields the reranker reads whatever the caller asked for, then
trims each hit's `_source` back to the caller's `_source` spec.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any


def source_entry(source: Mapping[str, Any], spec: Any) -> dict[str, Any]:
    """`_source` as the caller asked for it: the engine fetched the reranker's fields too."""
    if spec is False:
        return {}
    if spec is True or spec is None:
        return {"_source": dict(source)}
    includes: list[str] = []
    excludes: list[str] = []
    if isinstance(spec, str):
        includes = [spec]
    elif isinstance(spec, list):
        includes = [str(s) for s in spec]
    elif isinstance(spec, dict):
        inc = spec.get("includes", spec.get("include")) or []
        exc = spec.get("excludes", spec.get("exclude")) or []
        includes = [inc] if isinstance(inc, str) else list(inc)
        excludes = [exc] if isinstance(exc, str) else list(exc)
    return {"_source": filter_source(source, includes, excludes)}


def filter_source(
    source: Mapping[str, Any], includes: list[str], excludes: list[str], prefix: str = ""
) -> dict[str, Any]:
    """Keep the (dotted, wildcard) paths in `includes` (all when empty), drop `excludes`."""
    out: dict[str, Any] = {}
    for key, value in source.items():
        path = f"{prefix}{key}"
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in excludes):
            continue
        whole = not includes or any(fnmatch.fnmatchcase(path, p) for p in includes)
        if isinstance(value, Mapping) and not whole:
            inner = filter_source(value, includes, excludes, prefix=f"{path}.")
            if inner:
                out[key] = inner
        elif whole:
            out[key] = (
                filter_source(value, [], excludes, prefix=f"{path}.")
                if isinstance(value, Mapping) and excludes
                else value
            )
    return out
