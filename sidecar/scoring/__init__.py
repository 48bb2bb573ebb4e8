"""Scorers: the Scorer contract and its models (MiniLM on CPU, Lychee-rerank-mm, remote)."""

from sidecar.scoring.base import ModelState, Scorer

__all__ = ["ModelState", "Scorer"]
