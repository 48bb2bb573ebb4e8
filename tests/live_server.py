"""A real HTTP server for an app, in a thread on a free 127.0.0.1 port: for clients that need a
socket (browsers, the engines' official client libraries), not an in-process transport."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def serve_in_thread(
    app: Any, start_timeout_s: float
) -> tuple[str, uvicorn.Server, threading.Thread]:
    """(url, server, thread) of `app` served once it has started; stop with
    `server.should_exit = True` and `thread.join()`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # bound here and handed over: no race for the port
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, log_level="warning", lifespan="on", ws="none", http="h11"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the sidecar did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread
