"""Forwarding to the engine: a request the sidecar does not rerank goes to Elasticsearch or
OpenSearch as it came, and the engine's answer comes back as a stream (status, headers and body
bytes as they arrive, compressed or not), never parsed.

The connection settings are the search backends' (`engine.urls`, credentials, `verify_certs`,
`ca_file`, `request_timeout_s`, `retries` on refused connections), so a pass-through reaches the
engine exactly as a reranked search does. The sidecar's credentials replace the caller's
`Authorization`: the sidecar talks to the engine as itself, and `engine.allowed_indices` is the
caller's boundary. A refused connection is `EngineUnavailable`, no answer within the timeout
`EngineTimeout`, both naming the engine; a failure after the answer started ends its stream.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx

from sidecar.config import EngineSettings
from sidecar.deadline import Deadline
from sidecar.errors import EngineTimeout, EngineUnavailable

log = logging.getLogger(__name__)

# Hop-by-hop headers (RFC 9110 7.6.1) and what httpx sets itself: never forwarded either way.
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_NOT_FORWARDED = _HOP | {"host", "content-length", "authorization", "cookie"}
_CHUNK = 64 * 1024


@dataclass
class EngineAnswer:
    """An engine answer whose body is still on the wire: read it with `stream()` once."""

    status: int
    headers: list[tuple[str, str]]
    _response: httpx.Response
    engine: str

    async def stream(self) -> AsyncIterator[bytes]:
        """The body bytes as the engine sends them (content-encoding kept); closes the answer."""
        try:
            async for chunk in self._response.aiter_raw(_CHUNK):
                yield chunk
        except httpx.HTTPError as exc:  # the engine went away mid-answer: end the stream
            log.warning(
                "engine answer cut short", extra={"engine": self.engine, "error": repr(exc)}
            )
        finally:
            await self._response.aclose()

    async def read(self) -> bytes:
        """The whole body, decoded from its content-encoding (for the few answers the sidecar
        reads itself); closes the answer."""
        try:
            return await self._response.aread()
        except httpx.HTTPError as exc:
            raise EngineUnavailable(
                f"{self.engine} broke off its answer: {exc!r}", engine=self.engine
            ) from exc
        finally:
            await self._response.aclose()

    async def close(self) -> None:
        await self._response.aclose()


class EngineProxy:
    """Sends requests to the configured engine with the backend's connection settings."""

    def __init__(self, settings: EngineSettings, engine: str) -> None:
        self.engine = engine
        self.settings = settings
        self._urls = [httpx.URL(url.rstrip("/")) for url in settings.urls]
        self._next = 0
        headers: dict[str, str] = {}
        auth: httpx.BasicAuth | None = None
        if settings.api_key is not None:
            headers["authorization"] = f"ApiKey {settings.api_key.get_secret_value()}"
        elif settings.username is not None:
            password = settings.password.get_secret_value() if settings.password else ""
            auth = httpx.BasicAuth(settings.username, password)
        verify: ssl.SSLContext | bool = settings.verify_certs
        if settings.verify_certs and settings.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(settings.ca_file))
        self._client = httpx.AsyncClient(
            auth=auth,
            headers=headers,
            verify=verify,
            timeout=httpx.Timeout(settings.request_timeout_s),
            trust_env=False,  # the engine's address is configured, not taken from the proxy env
            follow_redirects=False,
        )
        for name in ("accept", "accept-encoding", "user-agent"):  # only what the caller sent
            self._client.headers.pop(name, None)

    async def send(
        self,
        method: str,
        raw_path: bytes,
        query: bytes,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        deadline: Deadline | None = None,
    ) -> EngineAnswer:
        """Send the request to the engine (the next node when one refuses the connection) and
        return its answer with the body unread. `raw_path` and `query` are the caller's bytes.
        With a `deadline` the wait is what is left of it (at most request_timeout_s); without,
        request_timeout_s (a pass-through has no budget of its own)."""
        wait = min(deadline.wait_s(), self.settings.request_timeout_s) if deadline else None
        forwarded = [(k, v) for k, v in headers if k.lower() not in _NOT_FORWARDED]
        attempts = max(1, min(len(self._urls), 1 + self.settings.retries))
        last: Exception | None = None
        for _ in range(attempts):
            base = self._urls[self._next % len(self._urls)]
            url = base.copy_with(raw_path=base.raw_path.rstrip(b"/") + raw_path + _query(query))
            request = self._client.build_request(
                method,
                url,
                headers=forwarded,
                content=body or None,
                timeout=httpx.Timeout(wait) if wait else httpx.USE_CLIENT_DEFAULT,
            )
            try:
                response = await self._client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                ms = (wait or self.settings.request_timeout_s) * 1000
                raise EngineTimeout(
                    f"{self.engine} did not answer within {ms:.0f} ms", engine=self.engine
                ) from exc
            except httpx.ConnectError as exc:  # nothing was sent: safe to try the next node
                last = exc
                self._next += 1  # the next node, for this request and the next ones
                continue
            except httpx.TransportError as exc:
                raise EngineUnavailable(
                    f"{self.engine} failed to answer: {exc!r}", engine=self.engine
                ) from exc
            return EngineAnswer(
                status=response.status_code,
                headers=answer_headers(response.headers.multi_items()),
                _response=response,
                engine=self.engine,
            )
        where = ", ".join(self.settings.urls)
        raise EngineUnavailable(
            f"{self.engine} cannot be reached at {where}: {last!r}", engine=self.engine
        ) from last

    async def close(self) -> None:
        await self._client.aclose()


def answer_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The engine's answer headers a caller gets: all but the hop-by-hop ones."""
    return [(k, v) for k, v in headers if k.lower() not in _HOP]


def _query(query: bytes) -> bytes:
    return b"?" + query if query else b""
