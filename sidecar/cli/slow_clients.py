"""uvicorn's HTTP protocol with a header read timeout: uvicorn cuts idle keep-alive connections
but not a client that connects and sends its request line and headers slowly (or not at all),
which holds a connection and its buffers for as long as it likes (slowloris). Here the request
line and headers must arrive within `limits.header_read_timeout_s` of the connection being made
or of the first byte of the next request; a late client gets a 408 and the connection closes.
The body's own timeout is the app's (sidecar.api.body_limit)."""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

_LATE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)


def http_protocol(header_read_timeout_s: float) -> type[asyncio.Protocol]:
    """The protocol class to hand uvicorn (`http=`), cutting headers slower than the timeout."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._header_timer is None:
                self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(header_read_timeout_s, self._late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _late(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            log.info("headers not received within %.1f s: connection closed", header_read_timeout_s)
            body = (
                b'{"error": "request_timeout", "message": "request headers did not arrive within '
                + f"{header_read_timeout_s:g}".encode()
                + b' s (limits.header_read_timeout_s)"}'
            )
            self.transport.write(_LATE % (len(body), body))
            self.transport.close()

    return HeaderTimeoutProtocol
