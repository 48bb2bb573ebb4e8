"""/readyz against real Elasticsearch and OpenSearch, with a key that may read cluster health and
with an index-read-only key that may not.

A least-privilege key (index `read` only) is refused `GET /_cluster/health` with 403
`security_exception`; the sidecar then counts its default index, which that key may do. Security
cannot be switched on in the engines these tests run (the integ-test-zip distributions have no
security plugin), so the refusal comes from a stand-in: `tests/security_proxy.py`, a real HTTP
proxy in front of the real engine that answers `_cluster/*` with the engine's own 403
security-exception body and forwards every other request to the engine unchanged. The count, the
searches and their answers are the real engine's.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.security_proxy import SecurityProxy

pytestmark = pytest.mark.engine

SEARCH_FIELDS = {"title": 3.0, "selling_points": 1.5, "brand.text": 2.0, "category.text": 1.0}


def engine_config(kind: str, url: str, **extra: Any) -> dict[str, Any]:
    extra.setdefault("allowed_indices", ["*"])
    return {"kind": kind, "urls": [url], "search_fields": SEARCH_FIELDS, **extra}


@pytest.fixture
def proxies() -> Iterator[Any]:
    """Start SecurityProxy instances in front of an engine; all are stopped at the end."""
    started: list[SecurityProxy] = []

    def start(url: str, kind: str, **options: Any) -> SecurityProxy:
        proxy = SecurityProxy(url, kind, **options).start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def test_a_key_with_cluster_privileges_is_ready_on_cluster_health(
    engine: tuple[str, str], client_factory: Any, proxies: Any
) -> None:
    kind, url = engine
    proxy = proxies(url, kind, refused=())  # forwards everything: the engine's own answers
    client = client_factory(engine=engine_config(kind, proxy.url))
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    part = ready.json()["engine"]
    assert part == {"ready": True, "kind": kind, "check": "cluster_health"}
    assert [p for p in proxy.paths() if "_count" in p or "_cluster" in p] == ["/_cluster/health"]


def test_an_index_read_only_key_is_ready_on_the_index_check(
    engine: tuple[str, str], client_factory: Any, proxies: Any
) -> None:
    kind, url = engine
    proxy = proxies(url, kind)
    client = client_factory(engine=engine_config(kind, proxy.url))
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["ready"] is True and "engine" not in body["not_ready"]
    part = body["engine"]
    assert part["ready"] is True and part["check"] == "index_count" and part["index"] == "products"
    assert "403" in part["reason"] and "security_exception" in part["reason"]
    assert "cluster:monitor/health" in part["reason"]
    # cluster health was asked and refused by the stand-in; the count went to the real engine
    assert ("GET", "/_cluster/health", 403) in proxy.seen
    assert ("GET", "/products/_count", 200) in proxy.seen
    # the same key searches: the engine behind the proxy answers, the sidecar reranks
    search = client.post("/search", json={"query": "hiking boots", "size": 3})
    assert search.status_code == 200, search.text
    assert search.json()["engine"] == kind and len(search.json()["hits"]) == 3


def test_a_read_only_key_without_its_default_index_is_not_ready(
    engine: tuple[str, str], client_factory: Any, proxies: Any
) -> None:
    kind, url = engine
    proxy = proxies(url, kind)
    client = client_factory(engine=engine_config(kind, proxy.url, default_index="no-such-index"))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert "engine" in body["not_ready"]
    part = body["engine"]
    assert part["ready"] is False and part["check"] == "index_count"
    assert part["index"] == "no-such-index"
    # both refusals are named: cluster health (403) and the missing index (the engine's 404)
    assert "cluster health refused (403" in part["reason"]
    assert "index_not_found_exception" in part["reason"] and "no-such-index" in part["reason"]
    assert ("GET", "/no-such-index/_count", 404) in proxy.seen


def test_a_key_refused_everything_is_not_ready_naming_both_checks(
    engine: tuple[str, str], client_factory: Any, proxies: Any
) -> None:
    kind, url = engine
    proxy = proxies(url, kind, refused=("/",), status=401)  # wrong credentials: all refused
    client = client_factory(engine=engine_config(kind, proxy.url))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    part = ready.json()["engine"]
    assert part["ready"] is False and part["check"] == "index_count"
    assert "cluster health refused (401" in part["reason"]
    assert "products/_count failed (401" in part["reason"]
    checks = [(m, p, s) for m, p, s in proxy.seen if "_cluster" in p or "_count" in p]
    assert checks == [("GET", "/_cluster/health", 401), ("GET", "/products/_count", 401)]


@pytest.mark.parametrize("kind", ["elasticsearch", "opensearch"])
def test_an_engine_that_does_not_answer_is_not_ready_without_a_fallback(
    kind: str, client_factory: Any
) -> None:
    """No engine needed: a port nothing listens on. Only a refusal (401/403) falls back."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    client = client_factory(engine=engine_config(kind, f"http://127.0.0.1:{port}"))
    ready = client.get("/readyz")
    assert ready.status_code == 503
    part = ready.json()["engine"]
    assert part["ready"] is False and part["check"] == "cluster_health"
    assert "cannot be reached" in part["reason"] and str(port) in part["reason"]
    assert "index" not in part


def test_the_embedded_engine_is_pinged(client: Any) -> None:
    part = client.get("/readyz").json()["engine"]
    assert part == {"ready": True, "kind": "embedded", "check": "ping"}
