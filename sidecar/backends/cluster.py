"""What the Elasticsearch and OpenSearch backends share: the request turned into a body of the
common DSL, the deadline, the answer read back, and the readiness check. A subclass only sends
the body (and the readiness probes) with its own client and maps that client's errors.

Readiness: `GET /_cluster/health` first. A key that may only read indices (the least privilege a
search sidecar needs) is refused cluster health with 401/403 (`security_exception`); then
`GET /{default_index}/_count`, which the same key may run, decides, and the answer names the
check that was used and why.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sidecar.backends import dsl
from sidecar.backends.base import Filter, Readiness, SearchResult
from sidecar.config import EngineSettings, FieldMap
from sidecar.deadline import Deadline

CLUSTER_HEALTH = "cluster_health"
INDEX_COUNT = "index_count"
# Each readiness probe's wait: two of them fit in /readyz's budget and a probe's timeout (3 s).
PROBE_TIMEOUT_S = 1.0
# How long an index's vector field check is believed: a re-created index is seen this late.
VECTOR_CHECK_TTL_S = 30.0


@dataclass(frozen=True)
class Probe:
    """One readiness request's outcome: the HTTP status (None when no answer came) and, when
    it failed, why (the engine's error type and reason, or the connection failure)."""

    status: int | None
    reason: str = ""
    body: Any = None  # the answer's JSON, when it succeeded

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def refused(self) -> bool:
        """Refused for the credentials (a key without the privilege), not failed."""
        return self.status in (401, 403)


def probe_reason(body: Any, fallback: str) -> str:
    """`type: reason` of an engine error body, else `fallback`."""
    kind, reason = dsl.engine_reason(body)
    return ": ".join(part for part in (kind, reason) if part) or fallback


def credentials(settings: EngineSettings) -> tuple[str | None, tuple[str, str] | None]:
    """(API key, (user, password)) from the settings: an API key wins over a user."""
    if settings.api_key is not None:
        return settings.api_key.get_secret_value(), None
    if settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else ""
        return None, (settings.username, password)
    return None, None


class ClusterBackend:
    """SearchBackend skeleton for a cluster reached over the network that speaks the
    Elasticsearch query DSL (Elasticsearch, OpenSearch); the embedded engine is not one."""

    name = "engine"
    vector_type = "dense_vector"  # the mapping type of a vector field on this engine

    def __init__(self, settings: EngineSettings, field_map: FieldMap) -> None:
        self.settings = settings
        self.source_fields = field_map.source_fields()
        self._vector_checks: dict[tuple[str, str, int], tuple[float, str | None]] = {}

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
        body = dsl.build_body(
            query,
            filters,
            window,
            offset,
            self.settings.search_fields,
            self.source_fields,
            raw_query,
        )
        # the client's request timeout: what is left of the deadline, request_timeout_s at most
        wait = min(deadline.wait_s(), self.settings.request_timeout_s)
        return dsl.parse_response(await self._send(dsl.search_path_index(index, body), body, wait))

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
        body = self._knn_body(list(vector), filters, k, field, max(candidates, k))
        wait = min(deadline.wait_s(), self.settings.request_timeout_s)
        return dsl.parse_response(await self._send(index, body, wait))

    def _knn_body(
        self, vector: list[float], filters: Sequence[Filter], k: int, field: str, candidates: int
    ) -> dict[str, Any]:
        return dsl.knn_body_elasticsearch(vector, filters, k, field, candidates, self.source_fields)

    async def vector_field(self, index: str, field: str, dims: int) -> str | None:
        key = (index, field, dims)
        checked = self._vector_checks.get(key)
        if checked is not None and time.monotonic() - checked[0] < VECTOR_CHECK_TTL_S:
            return checked[1]
        probe = await self._probe(f"/{quote(index, safe='')}/_mapping/field/{quote(field)}")
        if not probe.ok:
            reason: str | None = f"the mapping of {index!r} cannot be read ({probe.reason})"
        else:
            reason = dsl.vector_field_problem(probe.body, field, dims, self.vector_type)
        self._vector_checks[key] = (time.monotonic(), reason)
        return reason

    async def _send(
        self, index: str | None, body: Mapping[str, Any], wait: float
    ) -> Mapping[str, Any]:
        """POST `body` to `index`/_search (to /_search for None: a point in time) within
        `wait` seconds; raise sidecar errors."""
        raise NotImplementedError

    async def readiness(self) -> Readiness:
        health = await self._probe("/_cluster/health")
        if health.ok:
            return Readiness(True, CLUSTER_HEALTH)
        if not health.refused:
            return Readiness(False, CLUSTER_HEALTH, reason=health.reason)
        index = self.settings.default_index
        refused = f"cluster health refused ({health.status} {health.reason})"
        count = await self._probe(f"/{quote(index, safe='')}/_count")
        if count.ok:
            return Readiness(True, INDEX_COUNT, reason=refused, index=index)
        failed = f"{index}/_count failed ({count.status or 'no answer'} {count.reason})"
        return Readiness(False, INDEX_COUNT, reason=f"{refused}; {failed}", index=index)

    async def ping(self) -> bool:
        return (await self.readiness()).ready

    async def _probe(self, path: str) -> Probe:
        """GET `path` within PROBE_TIMEOUT_S; never raises."""
        raise NotImplementedError
