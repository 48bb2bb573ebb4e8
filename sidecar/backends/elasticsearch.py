"""Elasticsearch 8/9 through the official async client.

The client refuses a server that does not say it is Elasticsearch (the `X-Elastic-Product`
header); that refusal, like a refused connection or a 5xx, is `EngineUnavailable` naming the
engine. Health is read from `_cluster/health`, not `GET /`: the minimal (integ-test-zip)
distribution has no handler for `/`; a key refused cluster health falls back to counting the
default index (sidecar.backends.cluster).

Requests carry `compatible-with=8` media types: the 9.x client would otherwise ask for
`compatible-with=9`, which Elasticsearch 8 refuses (400 media_type_header_exception), while
Elasticsearch 9 serves v8-compatible requests as they are. One client, both majors (checked on
8.19.21 and 9.5.3).

The warm path's costs, kept small: answers are read by `codec.loads` (orjson, with the standard
library's values); a client with the request's timeout is made once per 10 ms step of timeout
and kept (`options()` builds a whole client each time); the client's own INFO line per request
is left out (the sidecar's request line has `engine_ms`; its warnings still show), unless its
logger's level was set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from elasticsearch import (
    ApiError,
    AsyncElasticsearch,
    ConnectionError,
    ConnectionTimeout,
    TransportError,
    UnsupportedProductError,
)
from elasticsearch.serializer import JsonSerializer

from sidecar.backends import codec, dsl
from sidecar.backends.cluster import (
    PROBE_TIMEOUT_S,
    ClusterBackend,
    Probe,
    credentials,
    probe_reason,
)
from sidecar.config import EngineSettings, FieldMap
from sidecar.errors import EngineTimeout, EngineUnavailable, SidecarError

_V8 = "application/vnd.elasticsearch+json; compatible-with=8"
HEADERS = {"accept": _V8, "content-type": _V8}
_CLIENT_LOG = "elastic_transport.transport"
_TIMEOUT_CLIENTS = 256  # distinct timeouts kept; more clears them (a rare mix of budgets)


class FastJsonSerializer(JsonSerializer):
    """The client's JSON serializer, reading answers with `codec.loads`."""

    def json_loads(self, data: bytes) -> Any:
        return codec.loads(data)


class ElasticsearchBackend(ClusterBackend):
    """SearchBackend over an Elasticsearch cluster."""

    name = "elasticsearch"

    def __init__(self, settings: EngineSettings, field_map: FieldMap) -> None:
        super().__init__(settings, field_map)
        options: dict[str, Any] = {}
        if settings.ca_file is not None:
            options["ca_certs"] = str(settings.ca_file)
        api_key, user = credentials(settings)
        if api_key is not None:
            options["api_key"] = api_key
        elif user is not None:
            options["basic_auth"] = user
        self._client = AsyncElasticsearch(
            settings.urls,
            verify_certs=settings.verify_certs,
            request_timeout=settings.request_timeout_s,
            max_retries=settings.retries,
            retry_on_timeout=False,  # a retry after a timeout would outlive the deadline
            serializer=FastJsonSerializer(),
            **options,
        )
        self._timed: dict[float, AsyncElasticsearch] = {}
        quiet = logging.getLogger(_CLIENT_LOG)
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)

    def _with_timeout(self, wait: float) -> AsyncElasticsearch:
        """The client with `wait` as its request timeout, to the nearest 10 ms (1 ms under
        0.1 s): the pipeline's own guard allows the engine 50 ms beyond its share."""
        step = round(wait, 2) if wait >= 0.1 else max(round(wait, 3), 0.001)
        client = self._timed.get(step)
        if client is None:
            if len(self._timed) >= _TIMEOUT_CLIENTS:
                self._timed.clear()
            client = self._timed[step] = self._client.options(request_timeout=step)
        return client

    async def _send(
        self, index: str | None, body: Mapping[str, Any], wait: float
    ) -> Mapping[str, Any]:
        path = "/_search" if index is None else f"/{quote(index, safe=',*')}/_search"
        try:
            response = await self._with_timeout(wait).perform_request(
                "POST", path, headers=HEADERS, body=body
            )
        except (ApiError, TransportError) as exc:
            raise self._error(exc, index or "_all", wait) from exc
        result: Mapping[str, Any] = response.body
        return result

    def _error(self, exc: Exception, index: str, wait: float) -> SidecarError:
        if isinstance(exc, UnsupportedProductError):
            return EngineUnavailable(
                f"{self.name}: the server at {self._where()} is not Elasticsearch "
                "(no X-Elastic-Product header)",
                engine=self.name,
            )
        if isinstance(exc, ApiError) and "x-elastic-product" not in exc.meta.headers:
            # An error answer without the product header came from something else: another
            # engine (OpenSearch answers 406 to the client's media type) or a proxy.
            return EngineUnavailable(
                f"{self.name}: the server at {self._where()} answered {exc.meta.status} and is "
                f"not Elasticsearch: {dsl.engine_reason(exc.body)[1] or exc.message}",
                engine=self.name,
            )
        if isinstance(exc, ApiError):
            return dsl.error_for_status(self.name, index, exc.meta.status, exc.body)
        if isinstance(exc, ConnectionTimeout):
            return EngineTimeout(
                f"{self.name} did not answer within {wait * 1000:.0f} ms", engine=self.name
            )
        reason = exc.message if isinstance(exc, TransportError) else str(exc)
        if isinstance(exc, ConnectionError):
            return EngineUnavailable(
                f"{self.name} cannot be reached at {self._where()}: {reason}", engine=self.name
            )
        return EngineUnavailable(f"{self.name} failed: {reason}", engine=self.name)

    def _where(self) -> str:
        return ", ".join(self.settings.urls)

    async def _probe(self, path: str) -> Probe:
        try:
            response = await self._client.options(request_timeout=PROBE_TIMEOUT_S).perform_request(
                "GET", path, headers=HEADERS
            )
        except UnsupportedProductError:
            return Probe(None, f"the server at {self._where()} is not Elasticsearch")
        except ApiError as exc:
            return Probe(exc.meta.status, probe_reason(exc.body, exc.message))
        except TransportError as exc:
            return Probe(None, f"cannot be reached at {self._where()}: {exc.message}")
        return Probe(response.meta.status, body=response.body)

    async def close(self) -> None:
        await self._client.close()
