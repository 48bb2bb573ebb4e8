"""The first stage: the engine's lexical search, and with `hybrid` a vector leg beside it,
fused in the sidecar.

    query text ──► lexical leg: backend.search (BM25, or the caller's raw query)  ─┐
              └──► vector leg: scorer.embed_query ─► backend.vector_search (k-NN) ─┴► fusion

Both legs run at once under the engine's share of the request's Deadline; the query's vector
comes from the scorer's own query cache, so the scoring that follows does not encode it again.
The fused list (reciprocal rank fusion by default, sidecar.backends.fusion) fills the window,
each hit carrying its rank and score in each leg (`explain`). Filters apply to both legs.

The search stays lexical, and says why (`reason`), where the vector leg cannot run or would
only add noise: hybrid off or not asked for, no query text, a query in a script the scorer does
not read (its vector is noise: an English model's vector of a Chinese query), a scorer without
vectors, an index without the vector field, or ids that repeat within a leg (a field map whose
id is not unique: the legs cannot be matched product by product).
A vector leg that fails or runs out of time costs the request its vector hits, not its answer.
On Elasticsearch's basic licence the engine's own RRF and linear retrievers are not available,
which is why the fusion is the sidecar's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sidecar.backends import fusion
from sidecar.backends.base import Filter, SearchBackend, SearchesVectors, SearchResult
from sidecar.config import HybridSettings
from sidecar.deadline import Deadline
from sidecar.errors import SidecarError
from sidecar.scoring.base import EmbedsText, Scorer, languages_of
from sidecar.writing_systems import unreadable_script

Retrieval = Literal["lexical", "hybrid"]
LEXICAL, VECTOR = "lexical", "vector"


@dataclass
class Retrieved:
    result: SearchResult
    retrieval: Retrieval  # what ran
    reason: str = ""  # why lexical where hybrid was asked for
    timings: dict[str, float] = field(default_factory=dict)


class Retriever:
    def __init__(self, backend: SearchBackend, scorer: Scorer, settings: HybridSettings) -> None:
        self.backend = backend
        self.scorer = scorer
        self.settings = settings

    def wanted(self, asked: Retrieval | None) -> Retrieval:
        return asked or ("hybrid" if self.settings.enabled else "lexical")

    async def unavailable(self, index: str) -> str | None:
        """Why the vector leg cannot run on `index` (None: it can). Never raises."""
        scorer = self.scorer
        if not isinstance(self.backend, SearchesVectors):
            return f"the {self.backend.name} engine has no vector search"
        if not isinstance(scorer, EmbedsText):
            return f"the scorer {scorer.model_id} makes no vectors (the vector leg needs minilm)"
        if not scorer.state.ready:
            return f"the scorer {scorer.model_id} is {scorer.state.status}"
        if scorer.dimensions != self.settings.dims:
            return (
                f"the scorer makes vectors of {scorer.dimensions} dimensions, "
                f"hybrid.dims is {self.settings.dims}"
            )
        return await self.backend.vector_field(index, self.settings.field, self.settings.dims)

    async def search(
        self,
        index: str,
        text: str | None,
        filters: Sequence[Filter],
        window: int,
        deadline: Deadline,
        raw_query: Mapping[str, Any] | None = None,
        asked: Retrieval | None = None,
    ) -> Retrieved:
        reason = await self._lexical_only(index, text, raw_query, asked)
        lexical = self.backend.search(index, text, filters, window, deadline, raw_query)
        if reason is not None:
            started = time.perf_counter()
            result = await lexical
            return Retrieved(result, "lexical", reason, {"lexical_ms": _ms(started)})
        started = time.perf_counter()
        lexical_task = asyncio.ensure_future(_timed(lexical))
        try:
            # held to the engine's deadline itself: a slow query encoding (the scorer's thread
            # busy) costs the vector hits, not the search (the encoding still lands in the cache)
            vector_result, vector_ms, embed_ms = await asyncio.wait_for(
                self._vector_leg(index, text or "", filters, window, deadline),
                timeout=deadline.wait_s(),
            )
        except (SidecarError, RuntimeError, TimeoutError) as exc:
            result, lexical_ms = await lexical_task
            why = exc.message if isinstance(exc, SidecarError) else str(exc) or "timed out"
            timings = {"lexical_ms": lexical_ms, "vector_ms": _ms(started)}
            return Retrieved(result, "lexical", f"the vector leg failed: {why}", timings)
        except BaseException:
            lexical_task.cancel()
            raise
        result, lexical_ms = await lexical_task
        legs = {LEXICAL: result.hits, VECTOR: vector_result.hits}
        repeated = _repeated_id(legs)
        if repeated is not None:
            timings = {"lexical_ms": lexical_ms, "vector_ms": vector_ms}
            why = f"ids repeat within a leg ({repeated!r}): the legs cannot be fused"
            return Retrieved(result, "lexical", why, timings)
        weights = {LEXICAL: self.settings.lexical_weight, VECTOR: self.settings.vector_weight}
        if self.settings.fusion == "rrf":
            fused = fusion.rrf(legs, weights, self.settings.rrf_k)
        else:
            fused = fusion.linear(legs, weights)
        hits = fused[:window]
        merged = SearchResult(
            hits=hits, total=max(result.total, len(fused)), took_ms=result.took_ms, raw=result.raw
        )
        timings = {
            "lexical_ms": lexical_ms,
            "vector_ms": vector_ms,
            "embed_ms": embed_ms,
            "vector_only": float(sum(1 for h in hits if LEXICAL not in h.legs)),
        }
        return Retrieved(merged, "hybrid", "", timings)

    async def _lexical_only(
        self,
        index: str,
        text: str | None,
        raw_query: Mapping[str, Any] | None,
        asked: Retrieval | None,
    ) -> str | None:
        if self.wanted(asked) == "lexical":
            return "hybrid is off" if asked is None else "lexical was asked for"
        if not (text or "").strip():
            return "no query text for the vector leg"
        if raw_query is not None and raw_query.get("pit") is not None:
            return "a point-in-time search pages the engine's own order"
        script = unreadable_script(text or "", languages_of(self.scorer))
        if script is not None:
            return f"the scorer {self.scorer.model_id} does not read {script} script"
        return await self.unavailable(index)

    async def _vector_leg(
        self, index: str, text: str, filters: Sequence[Filter], k: int, deadline: Deadline
    ) -> tuple[SearchResult, float, float]:
        assert isinstance(self.scorer, EmbedsText)  # checked by unavailable()
        assert isinstance(self.backend, SearchesVectors)
        started = time.perf_counter()
        vector = await self.scorer.embed_query(text)
        embedded = time.perf_counter()
        result = await self.backend.vector_search(
            index, vector, filters, k, deadline, self.settings.field, self.settings.candidates
        )
        return result, _ms(started), round((embedded - started) * 1000, 3)


def _repeated_id(legs: Mapping[str, Sequence[Any]]) -> str | None:
    """An id found twice in one leg, if any: fusion matches products by id."""
    for hits in legs.values():
        seen: set[tuple[str, str]] = set()
        for hit in hits:
            key = (hit.index, hit.id)
            if key in seen:
                return str(hit.id)
            seen.add(key)
    return None


async def _timed(work: Any) -> tuple[SearchResult, float]:
    started = time.perf_counter()
    result: SearchResult = await work
    return result, _ms(started)


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
