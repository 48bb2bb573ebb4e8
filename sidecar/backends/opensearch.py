"""OpenSearch 2/3 through the async `opensearch-py` client.

Same DSL as Elasticsearch (sidecar.backends.dsl); only the client and its exceptions
differ. OpenSearch has no Elasticsearch-style API keys: a configured `api_key` is sent as an
`Authorization: ApiKey ...` header for proxies or security plugins that accept one.

Answers are read by `codec.loads` (orjson, with the standard library's values), and the
client's own INFO line per request is left out (the sidecar's request line has `engine_ms`; its
warnings still show), unless its logger's level was set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import (
    ConnectionError,
    ConnectionTimeout,
    OpenSearchException,
    SerializationError,
    TransportError,
)
from opensearchpy.serializer import JSONSerializer

from sidecar.backends import codec, dsl
from sidecar.backends.base import Filter
from sidecar.backends.cluster import (
    PROBE_TIMEOUT_S,
    ClusterBackend,
    Probe,
    credentials,
    probe_reason,
)
from sidecar.config import EngineSettings, FieldMap
from sidecar.errors import EngineTimeout, EngineUnavailable, SidecarError

_CLIENT_LOG = "opensearch"


class FastJSONSerializer(JSONSerializer):
    """The client's JSON serializer, reading answers with `codec.loads`."""

    def loads(self, s: str) -> Any:
        try:
            return codec.loads(s)
        except (ValueError, TypeError) as e:
            raise SerializationError(s, e) from e


class OpenSearchBackend(ClusterBackend):
    """SearchBackend over an OpenSearch cluster."""

    name = "opensearch"
    vector_type = "knn_vector"

    def _knn_body(
        self, vector: list[float], filters: Sequence[Filter], k: int, field: str, candidates: int
    ) -> dict[str, Any]:
        return dsl.knn_body_opensearch(vector, filters, k, field, self.source_fields)

    def __init__(self, settings: EngineSettings, field_map: FieldMap) -> None:
        super().__init__(settings, field_map)
        options: dict[str, Any] = {}
        api_key, user = credentials(settings)
        if api_key is not None:
            options["headers"] = {"authorization": f"ApiKey {api_key}"}
        elif user is not None:
            options["http_auth"] = user
        if settings.ca_file is not None:
            options["ca_certs"] = str(settings.ca_file)
        self._client = AsyncOpenSearch(
            hosts=settings.urls,
            verify_certs=settings.verify_certs,
            ssl_show_warn=settings.verify_certs,
            timeout=settings.request_timeout_s,
            max_retries=settings.retries,
            retry_on_timeout=False,  # a retry after a timeout would outlive the deadline
            serializer=FastJSONSerializer(),
            **options,
        )
        quiet = logging.getLogger(_CLIENT_LOG)
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)

    async def _send(
        self, index: str | None, body: Mapping[str, Any], wait: float
    ) -> Mapping[str, Any]:
        try:  # index None: POST /_search (a point in time names its indices)
            response: Mapping[str, Any] = await self._client.search(
                index=index, body=body, params={"request_timeout": wait}
            )
        except OpenSearchException as exc:
            raise self._error(exc, index or "_all", wait) from exc
        return response

    def _error(self, exc: OpenSearchException, index: str, wait: float) -> SidecarError:
        if isinstance(exc, ConnectionTimeout):
            return EngineTimeout(
                f"{self.name} did not answer within {wait * 1000:.0f} ms", engine=self.name
            )
        if isinstance(exc, ConnectionError):
            return EngineUnavailable(
                f"{self.name} cannot be reached at {', '.join(self.settings.urls)}: {exc.error}",
                engine=self.name,
            )
        if isinstance(exc, TransportError) and isinstance(exc.status_code, int):
            return dsl.error_for_status(self.name, index, exc.status_code, exc.info)
        return EngineUnavailable(f"{self.name} failed: {exc}", engine=self.name)

    async def _probe(self, path: str) -> Probe:
        try:
            body = await self._client.transport.perform_request(
                "GET", path, params={"request_timeout": PROBE_TIMEOUT_S}
            )
        except ConnectionError as exc:  # ConnectionTimeout included
            where = ", ".join(self.settings.urls)
            return Probe(None, f"cannot be reached at {where}: {exc.error}")
        except TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else None
            return Probe(status, probe_reason(exc.info, str(exc.error)))
        except OpenSearchException as exc:
            return Probe(None, str(exc))
        return Probe(200, body=body)

    async def close(self) -> None:
        await self._client.close()
