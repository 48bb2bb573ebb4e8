"""Slow clients are cut, by the real server process (`rerank-sidecar serve`, embedded default):
a client that sends its headers too slowly, or never, and one that drips its body, get a 408 and
lose the connection instead of holding it. Asserts what comes back, never how fast."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.redis_server import free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("slow-clients") / "server.log"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RERANK_RULES__WATCH": "false",
        "RERANK_LIMITS__HEADER_READ_TIMEOUT_S": "1",
        "RERANK_LIMITS__BODY_READ_TIMEOUT_S": "1",
    }
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar.cli", "serve", "--port", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(log_path.read_text()[-2000:])
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(30)  # far above the 1 s limits: only a server that never cuts fails here
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def body_of(raw: bytes) -> dict[str, object]:
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


def test_a_client_that_never_sends_its_headers_is_cut(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        raw = answer(sock)
    assert raw.startswith(b"HTTP/1.1 408")
    assert body_of(raw)["error"] == "request_timeout"


def test_headers_sent_too_slowly_are_cut(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(b"POST /api/rerank HTTP/1.1\r\nHost: sidecar\r\n")  # and no more
        raw = answer(sock)
    assert raw.startswith(b"HTTP/1.1 408")


def test_a_dripped_body_is_cut_with_the_projects_error(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(
            b"POST /api/rerank HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200\r\nConnection: close\r\n\r\n"
            b'{"query": "boots", '  # 200 bytes promised, 19 sent
        )
        raw = answer(sock)
    assert raw.startswith(b"HTTP/1.1 408"), raw[:200]
    body = body_of(raw)
    assert body["error"] == "request_timeout" and body["field"] == "body"


def test_a_chunked_body_that_stops_is_cut(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(
            b"POST /api/rerank HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            b'5\r\n{"que\r\n'
        )
        raw = answer(sock)
    assert raw.startswith(b"HTTP/1.1 408"), raw[:200]
    assert body_of(raw)["error"] == "request_timeout"


def test_a_prompt_client_is_answered_on_the_same_server(server: int) -> None:
    response = httpx.get(f"http://127.0.0.1:{server}/healthz", timeout=10)
    assert response.status_code == 200
