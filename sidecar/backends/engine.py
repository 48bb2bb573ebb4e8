"""What the Elasticsearch and OpenSearch backends share: the request turned into a body of the
common DSL, the deadline, and the answer read back. A subclass only sends the body with its own
client and maps that client's errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sidecar.backends import dsl
from sidecar.backends.base import Filter, SearchResult
from sidecar.config import EngineSettings, FieldMap


def credentials(settings: EngineSettings) -> tuple[str | None, tuple[str, str] | None]:
    """(API key, (user, password)) from the settings: an API key wins over a user."""
    if settings.api_key is not None:
        return settings.api_key.get_secret_value(), None
    if settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else ""
        return None, (settings.username, password)
    return None, None


class EngineBackend:
    """SearchBackend skeleton for engines that speak the Elasticsearch query DSL."""

    name = "engine"

    def __init__(self, settings: EngineSettings, field_map: FieldMap) -> None:
        self.settings = settings
        self.source_fields = field_map.source_fields()

    async def search(
        self,
        index: str,
        query: str | None,
        filters: Sequence[Filter],
        window: int,
        timeout: float,
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
        wait = min(timeout, self.settings.request_timeout_s)  # the request's deadline wins
        return dsl.parse_response(await self._send(index, body, wait))

    async def _send(self, index: str, body: Mapping[str, Any], wait: float) -> Mapping[str, Any]:
        """POST `body` to `index`/_search within `wait` seconds; raise sidecar errors."""
        raise NotImplementedError
