"""Ranking-quality evaluation: judged data in, engine vs reranked vs random metrics out."""
