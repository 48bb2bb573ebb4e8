"""A scorer's score identity: one short string naming everything that changes its scores.

It enters every pair-score cache key (sidecar.cache.keys), so changing any part of it (the
weights' content, the prompt, text or pixel limits, dtype) is a cache miss instead of an old
score served for the cache's TTL. The weights enter by what the files hold, not by the folder's
name: an in-place upgrade of a model folder changes the identity.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

# Large weight files are fingerprinted by size and their first and last MiB: enough to tell two
# checkpoints apart (headers hold tensor names and shapes, tails the last tensors' bytes) while
# reading a 16 GB model in milliseconds.
_EDGE = 1 << 20
_SMALL = 8 << 20  # files up to this size (configs, tokenizers) are read whole


def weights_fingerprint(folder: str | Path) -> str:
    """Hash of the model folder's files: names, sizes and content (edges of large files)."""
    root = Path(folder)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and not _hidden(p, root))
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.relative_to(root).as_posix()}\0{size}\0".encode())
        with path.open("rb") as handle:
            if size <= _SMALL:
                digest.update(handle.read())
            else:
                digest.update(handle.read(_EDGE))
                handle.seek(size - _EDGE)
                digest.update(handle.read(_EDGE))
    return digest.hexdigest()[:16]


def folder_fingerprint(path: str | Path) -> str:
    """`weights_fingerprint` of a local folder; a path that is no readable folder (a hub name,
    a missing mount) is named as it is, and the model's load reports the real problem."""
    try:
        return weights_fingerprint(path) if Path(path).is_dir() else f"path:{path}"
    except OSError as exc:
        return f"unreadable:{path}:{exc.errno}"


def score_identity(**parts: Any) -> str:
    """The identity string of `parts` (model, weights, prompt version, limits, dtype...)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)
