"""The drop-in beyond `_search`, against real Elasticsearch and real OpenSearch: what passes
through unchanged, what is refused (writes, indices outside the allowlist), what else is
reranked (`_msearch`, URI search, a point in time's first page), paging that keeps the engine's
order (`search_after`, scroll, a field sort), and the wire details the official clients check.

Every test runs once per engine (the `engine` fixture: the demo catalog in `products`);
expected answers come from the engine itself, asked directly.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from sidecar.demo import load_catalog
from tests.slow_proxy import SlowProxy

pytestmark = pytest.mark.engine

SEARCH_FIELDS = {"title": 3.0, "selling_points": 1.5, "brand.text": 2.0, "category.text": 1.0}
V9 = "application/vnd.elasticsearch+json; compatible-with=9"
V8 = "application/vnd.elasticsearch+json; compatible-with=8"


def config(kind: str, url: str, **extra: Any) -> dict[str, Any]:
    extra.setdefault("allowed_indices", ["*"])
    return {"kind": kind, "urls": [url], "search_fields": SEARCH_FIELDS, **extra}


def direct(url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{url}{path}", trust_env=False, timeout=30, **kwargs)


@pytest.fixture
def app(engine: tuple[str, str], client_factory: Any) -> Any:
    kind, url = engine
    return client_factory(engine=config(kind, url))


ALL_IDS = [p["id"] for p in load_catalog()]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/products/_mapping", None),
        ("GET", "/products/_doc/p00001", None),
        ("GET", "/products/_doc/no-such-id", None),
        ("GET", "/products/_source/p00002", None),
        ("GET", "/products/_count", None),
        ("POST", "/products/_count", {"query": {"term": {"category": "Footwear"}}}),
        ("POST", "/products/_mget", {"ids": ALL_IDS}),  # ~0.5 MB: streamed through
        ("GET", "/no-such-index/_count", None),
        ("POST", "/products/_validate/query?explain=true", {"query": {"match": {"title": "x"}}}),
    ],
)
def test_passthrough_answers_are_the_engines_own(
    app: Any, engine: tuple[str, str], method: str, path: str, body: Any
) -> None:
    _, url = engine
    content = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json"} if body is not None else {}
    through = app.request(method, path, content=content, headers=headers)
    own = direct(url, method, path, content=content, headers=headers)
    assert through.status_code == own.status_code
    assert through.content == own.content  # byte for byte
    for name in ("content-type", "x-elastic-product", "x-opensearch-version"):
        assert through.headers.get(name) == own.headers.get(name), name
    assert "x-request-id" in through.headers  # the sidecar's own header is added


def test_a_pass_through_leaves_media_types_to_the_engine(app: Any, engine: tuple[str, str]) -> None:
    _, url = engine
    for headers in ({"accept": "application/yaml"}, {"accept": V8, "content-type": V8}):
        through = app.get("/products/_count", headers=headers)
        own = direct(url, "GET", "/products/_count", headers=headers)
        assert (through.status_code, through.content) == (own.status_code, own.content)
        assert through.headers["content-type"] == own.headers["content-type"]


def test_head_requests_answer_with_the_engines_status(app: Any) -> None:
    assert app.head("/products").status_code == 200
    assert app.head("/no-such-index").status_code == 404
    assert app.head("/products/_doc/p00001").status_code == 200


def test_cluster_health_passes_through(app: Any, engine: tuple[str, str]) -> None:
    _, url = engine
    through = app.get("/_cluster/health")
    assert through.status_code == 200
    assert (
        through.json()["cluster_name"]
        == direct(url, "GET", "/_cluster/health").json()["cluster_name"]
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/rerank-scratch", {}),
        ("DELETE", "/products", None),
        ("POST", "/_bulk", '{"index": {"_index": "products", "_id": "x"}}\n{"title": "x"}\n'),
        ("POST", "/products/_doc", {"title": "new"}),
        ("PUT", "/products/_doc/p00001", {"title": "overwritten"}),
        ("DELETE", "/products/_doc/p00001", None),
        ("POST", "/products/_update/p00001", {"doc": {"title": "updated"}}),
        ("POST", "/products/_delete_by_query", {"query": {"match_all": {}}}),
        ("PUT", "/products/_settings", {"index": {"number_of_replicas": 0}}),
    ],
)
def test_writes_are_the_engines_403_and_never_reach_it(
    app: Any, engine: tuple[str, str], method: str, path: str, body: Any
) -> None:
    _, url = engine
    content = body if isinstance(body, str) else json.dumps(body) if body is not None else None
    response = app.request(
        method, path, content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["type"] == "security_exception" and "engine.allow_writes" in error["reason"]
    assert response.json()["status"] == 403
    doc = direct(url, "GET", "/products/_doc/p00001").json()
    assert doc["found"] and doc["_source"]["title"] != "overwritten"
    assert direct(url, "GET", "/products/_count").json()["count"] == len(ALL_IDS)
    assert direct(url, "HEAD", "/rerank-scratch").status_code == 404


def test_writes_pass_through_when_allowed(engine: tuple[str, str], client_factory: Any) -> None:
    kind, url = engine
    client = client_factory(engine=config(kind, url, allow_writes=True))
    direct(url, "DELETE", "/rerank-writes")
    try:
        created = client.put("/rerank-writes", json={})
        assert created.status_code == 200 and created.json()["acknowledged"] is True
        put = client.put("/rerank-writes/_doc/1?refresh=true", json={"title": "trail tent"})
        assert put.status_code == 201 and put.json()["result"] == "created"
        got = direct(url, "GET", "/rerank-writes/_doc/1").json()
        assert got["found"] and got["_source"] == {"title": "trail tent"}
        assert client.delete("/rerank-writes").status_code == 200
        assert direct(url, "HEAD", "/rerank-writes").status_code == 404
    finally:
        direct(url, "DELETE", "/rerank-writes")


def test_the_allowlist_binds_every_pass_through(
    engine: tuple[str, str], client_factory: Any
) -> None:
    kind, url = engine
    client = client_factory(engine=config(kind, url, allowed_indices=[]))  # products only
    assert client.get("/products/_count").status_code == 200
    assert client.get("/_cluster/health").status_code == 200
    for method, path, body in [
        ("GET", "/customers/_count", None),
        ("GET", "/products,customers/_doc/1", None),
        ("GET", "/_cat/indices", None),  # cluster-level: names every index
        ("GET", "/_mapping", None),
        ("POST", "/_count", {}),
        ("POST", "/_mget", {"docs": [{"_index": "customers", "_id": "1"}]}),
        ("POST", "/products/_mget", {"docs": [{"_id": "p1"}, {"_index": "customers", "_id": "1"}]}),
        ("POST", "/customers/_pit?keep_alive=1m", None),
    ]:
        response = client.request(method, path, json=body)
        assert response.status_code == 403, (path, response.text)
        error = response.json()["error"]
        assert error["type"] == "security_exception"
        assert "is not allowed (engine.allowed_indices" in error["reason"], path
    # the index is named in the message
    reason = client.get("/customers/_count").json()["error"]["reason"]
    assert "'customers'" in reason


def test_the_sidecars_own_routes_keep_precedence(app: Any) -> None:
    wrong_method = app.get("/search")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"
    for path in ("/search/products", "/api/nothing", "/admin/x/y", "/ui/a/b"):
        response = app.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found", path  # the sidecar's, not the engine's
    assert app.get("/healthz").status_code == 200
    assert app.get("/metrics").headers["content-type"].startswith("text/plain")


# --------------------------------------------------------------- reranked beyond _search


def test_msearch_reranks_each_search_and_one_failure_stays_alone(
    engine: tuple[str, str], client_factory: Any
) -> None:
    kind, url = engine
    client = client_factory(engine=config(kind, url, allowed_indices=["products", "missing-*"]))
    boots = {"query": {"match": {"title": "hiking boots"}}, "size": 5}
    bad_range = {
        "query": {
            "bool": {
                "must": [{"match": {"title": "boots"}}],
                "filter": [{"range": {"price": {"gte": "cheap"}}}],
            }
        }
    }
    lines = [
        {"index": "products"},
        boots,
        {"index": "customers"},  # outside the allowlist
        boots,
        {"index": "missing-index"},  # allowed, but not there
        boots,
        {},  # the path's index
        bad_range,
        {"index": "products"},
        {"query": {"match": {"title": "tent"}}, "sort": [{"price": "asc"}], "size": 3},
    ]
    body = "".join(json.dumps(line) + "\n" for line in lines)
    response = client.post(
        "/products/_msearch", content=body, headers={"content-type": "application/x-ndjson"}
    )
    assert response.status_code == 200, response.text
    ok, forbidden, missing, refused, sorted_page = response.json()["responses"]
    single = client.post("/products/_search", json=boots).json()
    assert ok["status"] == 200 and ok["rerank"]["status"] == "ok"
    assert [h["_id"] for h in ok["hits"]["hits"]] == [h["_id"] for h in single["hits"]["hits"]]
    assert forbidden["status"] == 403 and forbidden["error"]["type"] == "security_exception"
    assert missing["status"] == 404 and missing["error"]["type"] == "index_not_found_exception"
    assert refused["status"] == 400 and refused["error"]["type"] == "query_shard_exception"
    engine_sorted = direct(url, "POST", "/products/_search", json=lines[-1]).json()
    assert [h["_id"] for h in sorted_page["hits"]["hits"]] == [
        h["_id"] for h in engine_sorted["hits"]["hits"]
    ]


def test_uri_search_is_reranked(app: Any, engine: tuple[str, str]) -> None:
    _, url = engine
    response = app.get("/products/_search", params={"q": "waterproof hiking boots", "size": 8})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rerank"]["status"] == "ok" and len(body["hits"]["hits"]) == 8
    assert all(h["_rerank"]["reranked"] for h in body["hits"]["hits"])
    engine_answer = direct(
        url, "GET", "/products/_search", params={"q": "waterproof hiking boots", "size": 100}
    ).json()
    assert body["hits"]["total"] == engine_answer["hits"]["total"]
    assert {h["_id"] for h in body["hits"]["hits"]} <= {
        h["_id"] for h in engine_answer["hits"]["hits"]
    }
    # a field prefix in q still reranks with the words; filter_path shapes the answer
    shaped = app.get(
        "/products/_search",
        params={"q": "title:tent", "filter_path": "hits.hits._id,hits.total", "size": 3},
    ).json()
    assert set(shaped) == {"hits"} and all(set(h) == {"_id"} for h in shaped["hits"]["hits"])
    as_int = app.get("/products/_search", params={"q": "tent", "rest_total_hits_as_int": "true"})
    assert isinstance(as_int.json()["hits"]["total"], int)
    unknown = app.get("/products/_search", params={"q": "tent", "colour": "red"})
    assert unknown.status_code == 400
    assert "unrecognized parameter: [colour]" in unknown.json()["error"]["reason"]


def _pit(client: Any, url: str, kind: str) -> tuple[str, str]:
    """Open a point in time through the sidecar: (its id, the path that closes it)."""
    if kind == "elasticsearch":
        opened = client.post("/products/_pit?keep_alive=1m")
        assert opened.status_code == 200, opened.text
        return opened.json()["id"], "/_pit"
    opened = client.post("/products/_search/point_in_time?keep_alive=1m")
    assert opened.status_code == 200, opened.text
    return opened.json()["pit_id"], "/_search/point_in_time"


def test_point_in_time_pages_keep_the_engines_order(app: Any, engine: tuple[str, str]) -> None:
    kind, url = engine
    pit, close = _pit(app, url, kind)
    sort = [{"price": "asc"}, {"id": "asc"}]
    page = {"query": {"match": {"title": "jacket"}}, "size": 5, "sort": sort}
    pit_body = {"id": pit, "keep_alive": "1m"}
    try:
        first = app.post("/_search", json={**page, "pit": pit_body})
        assert first.status_code == 200, first.text
        own_first = direct(url, "POST", "/_search", json={**page, "pit": pit_body}).json()
        ids = [h["_id"] for h in first.json()["hits"]["hits"]]
        assert ids == [h["_id"] for h in own_first["hits"]["hits"]]
        after = first.json()["hits"]["hits"][-1]["sort"]
        second = app.post("/_search", json={**page, "pit": pit_body, "search_after": after})
        own_second = direct(
            url, "POST", "/_search", json={**page, "pit": pit_body, "search_after": after}
        ).json()
        second_ids = [h["_id"] for h in second.json()["hits"]["hits"]]
        assert second_ids == [h["_id"] for h in own_second["hits"]["hits"]]
        assert second_ids and not set(second_ids) & set(ids)
    finally:
        closed = app.request(
            "DELETE", close, json={"id": pit} if kind == "elasticsearch" else {"pit_id": [pit]}
        )
        assert closed.status_code == 200, closed.text


def test_a_point_in_times_first_page_is_reranked_and_its_next_page_continues_the_engine(
    app: Any, engine: tuple[str, str]
) -> None:
    kind, url = engine
    pit, close = _pit(app, url, kind)
    # by relevance, as a point in time pages it: the engines give `sort` values only for a
    # sort, OpenSearch only with a tiebreaker
    sort = ["_score", "_doc"]
    page = {"query": {"match": {"title": "waterproof jacket"}}, "size": 6, "sort": sort}
    pit_body = {"id": pit, "keep_alive": "1m"}
    try:
        first = app.post("/_search", json={**page, "pit": pit_body})
        assert first.status_code == 200, first.text
        body = first.json()
        own = direct(url, "POST", "/_search", json={**page, "pit": pit_body}).json()
        hits, own_hits = body["hits"]["hits"], own["hits"]["hits"]
        # the engine's page, reordered by the model: the same hits, every one reranked
        assert body["rerank"]["status"] == "ok" and body["rerank"]["window"] == 6
        assert all(h["_rerank"]["reranked"] for h in hits)
        assert sorted(h["_id"] for h in hits) == sorted(h["_id"] for h in own_hits)
        scores = [h["_score"] for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert body["pit_id"]
        # every hit's sort is where the engine's page ends
        assert all(h["sort"] == own_hits[-1]["sort"] for h in hits)
        after = hits[-1]["sort"]
        next_page = {**page, "pit": {**pit_body, "id": body["pit_id"]}, "search_after": after}
        second = app.post("/_search", json=next_page)
        own_second = direct(url, "POST", "/_search", json=next_page).json()
        second_ids = [h["_id"] for h in second.json()["hits"]["hits"]]
        assert second_ids == [h["_id"] for h in own_second["hits"]["hits"]]
        assert second_ids and not set(second_ids) & {h["_id"] for h in hits}
    finally:
        closed = app.request(
            "DELETE", close, json={"id": pit} if kind == "elasticsearch" else {"pit_id": [pit]}
        )
        assert closed.status_code == 200, closed.text


def test_search_after_and_scroll_pages_keep_the_engines_order(
    app: Any, engine: tuple[str, str]
) -> None:
    _, url = engine
    page = {"query": {"match": {"title": "shoes"}}, "size": 4, "sort": [{"id": "asc"}]}
    first = app.post("/products/_search", json=page).json()
    assert first["rerank"]["status"] == "skipped"  # a field sort: the engine's own page
    own_first = direct(url, "POST", "/products/_search", json=page).json()
    assert [h["sort"] for h in first["hits"]["hits"]] == [
        h["sort"] for h in own_first["hits"]["hits"]
    ]
    after = first["hits"]["hits"][-1]["sort"]
    later = app.post("/products/_search", json={**page, "search_after": after})
    assert later.status_code == 200 and "rerank" not in later.json()
    own = direct(url, "POST", "/products/_search", json={**page, "search_after": after}).json()
    assert later.json()["hits"] == own["hits"]
    scrolled = app.post("/products/_search?scroll=1m", json=page)
    assert scrolled.status_code == 200 and "rerank" not in scrolled.json()
    scroll_id = scrolled.json()["_scroll_id"]
    more = app.post("/_search/scroll", json={"scroll": "1m", "scroll_id": scroll_id})
    assert more.status_code == 200 and more.json()["hits"]["hits"]
    assert (
        app.request("DELETE", "/_search/scroll", json={"scroll_id": scroll_id}).status_code == 200
    )


# ---------------------------------------------------------------------------- the wire


def test_answers_carry_what_the_clients_check(app: Any, engine: tuple[str, str]) -> None:
    kind, url = engine
    query = {"query": {"match": {"title": "tent"}}, "size": 2}
    plain = app.post("/products/_search", json=query)
    own = direct(url, "POST", "/products/_search", json=query)
    assert plain.headers["content-type"] == own.headers["content-type"]
    assert plain.headers.get("x-elastic-product") == own.headers.get("x-elastic-product")
    if kind == "elasticsearch":
        assert plain.headers["x-elastic-product"] == "Elasticsearch"
        for version, media in ((9, V9), (8, V8)):
            asked = app.post(
                "/products/_search",
                content=json.dumps(query),
                headers={"content-type": media, "accept": media},
            )
            assert asked.status_code == 200
            assert asked.headers["content-type"] == (
                f"application/vnd.elasticsearch+json;compatible-with={version}"
            )
            assert asked.headers["x-elastic-product"] == "Elasticsearch"
    else:
        assert "x-elastic-product" not in plain.headers
    text = app.post("/products/_search", content="{}", headers={"content-type": "text/plain"})
    own_text = direct(
        url, "POST", "/products/_search", content="{}", headers={"content-type": "text/plain"}
    )
    assert text.status_code == own_text.status_code == 406
    assert text.json() == own_text.json()


def test_an_unsupported_compatible_version_is_the_engines_400(client_factory: Any) -> None:
    client = client_factory()  # the embedded engine imitates Elasticsearch 9
    v7 = "application/vnd.elasticsearch+json; compatible-with=7"
    response = client.post(
        "/products/_search",
        content='{"query": {"match": {"title": "tent"}}}',
        headers={"content-type": v7, "accept": v7},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "media_type_header_exception"
    assert "version must be either version 9 or 8, but found 7" in error["caused_by"]["reason"]


def test_a_dead_or_slow_engine_is_503_or_504_on_a_pass_through(
    engine: tuple[str, str], client_factory: Any
) -> None:
    kind, url = engine
    closed = httpx.URL(url).copy_with(port=_closed_port())
    client = client_factory(engine=config(kind, str(closed)))
    response = client.get("/products/_count")
    assert response.status_code == 503 and response.json()["status"] == 503
    assert response.json()["error"]["sidecar"]["engine"] == kind
    host, port = httpx.URL(url).host, httpx.URL(url).port
    assert port is not None
    proxy = SlowProxy(host, port, delay=3.0).start()
    try:
        client = client_factory(engine=config(kind, proxy.url, request_timeout_s=0.5))
        response = client.get("/products/_count")
        assert response.status_code == 504, response.text
        assert kind in response.json()["error"]["reason"]
    finally:
        proxy.stop()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
