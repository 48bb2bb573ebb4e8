"""The request body's limits, enforced before anything parses it: its size (413) and the time
the client may take to send it (408), both in the project's error shape. A declared
Content-Length over the limit is refused at once; any other body is read here up to the limit
(refused past it, whether chunked or lying about its length) and replayed to the app. The whole
body must arrive within `read_timeout_s` of the first read, so a client that drips its body
cannot hold a request open."""

from __future__ import annotations

import json
import time
from collections import deque

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidecar.errors import RequestTimeout


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, 413, "body_too_large", self._too_large())
            return
        timed = _TimedReceive(receive, self.read_timeout_s)
        # Read the body here, up to the limit and the read timeout, then replay it: a timeout
        # raised while a route reads would come out as the framework's generic 400.
        messages: deque[Message] = deque()
        seen = 0
        while True:
            try:
                message = await timed()
            except RequestTimeout as exc:
                await self._refuse(send, 408, RequestTimeout.code, exc.message)
                return
            messages.append(message)
            if message["type"] != "http.request":
                break
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                await self._refuse(send, 413, "body_too_large", self._too_large())
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.popleft() if messages else await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"request body over {self.max_bytes} bytes (limits.max_body_bytes)"

    async def _refuse(self, send: Send, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": code, "message": message, "field": "body"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TimedReceive:
    """`receive`, with the body's chunks due within `timeout_s` of the first one asked for."""

    def __init__(self, receive: Receive, timeout_s: float) -> None:
        self._receive = receive
        self._timeout_s = timeout_s
        self._due: float | None = None

    async def __call__(self) -> Message:
        if self._due is None:
            self._due = time.monotonic() + self._timeout_s
        with anyio.move_on_after(max(self._due - time.monotonic(), 0.0)) as scope:
            message = await self._receive()
        if scope.cancelled_caught:
            raise RequestTimeout(
                f"the request body did not arrive within {self._timeout_s:g} s "
                "(limits.body_read_timeout_s)",
                field="body",
            )
        return message
