"""What a pass-through sends to the engine and hands back, seen from the engine's side: a
recording HTTP peer on 127.0.0.1 (a real socket) that answers like Elasticsearch and keeps every
request it got. The same calls against the real engines are in test_drop_in_passthrough.py."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

V9 = "application/vnd.elasticsearch+json; compatible-with=9"


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).seen.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            }
        )
        payload = b'{"count":3,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0}}'
        self.send_response(201 if self.command == "PUT" else 200)
        self.send_header("content-type", "application/json")
        self.send_header("x-elastic-product", "Elasticsearch")
        self.send_header("warning", '299 Elasticsearch-9.5.3 "a deprecation"')
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Recorder.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def engine(urls: list[str], **extra: Any) -> dict[str, Any]:
    return {"kind": "elasticsearch", "urls": urls, "allowed_indices": ["*"], **extra}


def test_the_request_reaches_the_engine_as_it_came(recorder: str, client_factory: Any) -> None:
    client = client_factory(engine=engine([recorder], username="sidecar", password="s3cret"))
    client.headers.pop("accept-encoding")  # the caller asks for no compression
    body = b'{"query": {"match": {"title": "tent"}}}'
    response = client.post(
        "/my%2Cproducts/_count?q=a%20b&pretty",
        content=body,
        headers={
            "authorization": "Bearer the-callers-own",
            "x-opaque-id": "gateway-17",
            "accept": V9,
            "content-type": V9,
        },
    )
    assert response.status_code == 200, response.text
    (seen,) = _Recorder.seen
    assert seen["method"] == "POST"
    assert seen["path"] == "/my%2Cproducts/_count?q=a%20b&pretty"  # not re-encoded
    assert seen["body"] == body
    headers = seen["headers"]
    assert (
        headers["authorization"] == "Basic c2lkZWNhcjpzM2NyZXQ="
    )  # the sidecar's, not the caller's
    assert headers["x-opaque-id"] == "gateway-17"
    assert headers["accept"] == V9 and headers["content-type"] == V9
    assert "accept-encoding" not in headers
    # the engine's answer comes back as it was: status, headers, bytes
    assert response.content == (
        b'{"count":3,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0}}'
    )
    assert response.headers["warning"] == '299 Elasticsearch-9.5.3 "a deprecation"'
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    assert response.headers["x-request-id"]


def test_an_api_key_replaces_the_callers_credentials(recorder: str, client_factory: Any) -> None:
    client = client_factory(engine=engine([recorder], api_key="a2V5OnZhbHVl"))
    client.get("/products/_doc/1", headers={"authorization": "Basic Y2FsbGVyOng="})
    (seen,) = _Recorder.seen
    assert seen["headers"]["authorization"] == "ApiKey a2V5OnZhbHVl"


def test_a_refused_node_hands_the_request_to_the_next(recorder: str, client_factory: Any) -> None:
    client = client_factory(engine=engine([_closed_url(), recorder]))
    response = client.get("/products/_count")
    assert response.status_code == 200 and json.loads(response.content)["count"] == 3
    assert len(_Recorder.seen) == 1


def test_an_allowed_write_passes_with_its_body(recorder: str, client_factory: Any) -> None:
    client = client_factory(engine=engine([recorder], allow_writes=True))
    bulk = b'{"index": {"_index": "products", "_id": "x"}}\n{"title": "x"}\n'
    response = client.post("/_bulk", content=bulk, headers={"content-type": "application/x-ndjson"})
    assert response.status_code == 200
    assert client.put("/products/_doc/x", json={"title": "x"}).status_code == 201
    assert [(s["method"], s["path"]) for s in _Recorder.seen] == [
        ("POST", "/_bulk"),
        ("PUT", "/products/_doc/x"),
    ]
    assert _Recorder.seen[0]["body"] == bulk


def test_pass_throughs_are_measured_by_api_not_by_path(recorder: str, client_factory: Any) -> None:
    client = client_factory(engine=engine([recorder]))
    client.get("/products/_count")
    client.get("/other/_count")
    metrics = client.get("/metrics").text
    line = 'sidecar_http_requests_total{method="GET",route="/{index}/_count",status="200"} 2.0'
    assert line in metrics
