"""/search and the drop-in /{index}/_search against real Elasticsearch and real OpenSearch.

Every test runs once per engine (the `engine` fixture); the engines hold the demo catalog in
`products` (scripts/test loads it with `rerank-sidecar index`). Expected values come from the
engine itself, queried directly with the same body, so the tests check what the sidecar adds.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from click.testing import CliRunner

from sidecar.backends.indexing import load_documents
from sidecar.cli import main
from sidecar.config import FieldMap, Settings
from sidecar.demo import load_queries
from tests.slow_proxy import SlowProxy

pytestmark = pytest.mark.engine

# brand/category are keywords (exact term filters); their `.text` subfields are full text.
SEARCH_FIELDS = {"title": 3.0, "selling_points": 1.5, "brand.text": 2.0, "category.text": 1.0}
FIELDS = [f"{name}^{boost:g}" for name, boost in SEARCH_FIELDS.items()]


def engine_config(kind: str, url: str, **extra: Any) -> dict[str, Any]:
    # the allowlist has its own tests; these search several indices, unknown ones included
    extra.setdefault("allowed_indices", ["*"])
    return {"kind": kind, "urls": [url], "search_fields": SEARCH_FIELDS, **extra}


def direct(url: str, body: dict[str, Any], index: str = "products") -> dict[str, Any]:
    """The engine's own answer to `body`."""
    response = httpx.post(f"{url}/{index}/_search", json=body, trust_env=False, timeout=30)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def direct_ids(url: str, query: dict[str, Any], size: int) -> list[str]:
    return [h["_id"] for h in direct(url, {"query": query, "size": size})["hits"]["hits"]]


def multi_match(text: str) -> dict[str, Any]:
    return {"multi_match": {"query": text, "fields": FIELDS, "type": "best_fields"}}


def closed_port() -> int:
    """A port nothing listens on: connecting to it is a real refused connection."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def app(engine: tuple[str, str], client_factory: Any) -> Any:
    kind, url = engine
    return client_factory(engine=engine_config(kind, url))


# ------------------------------------------------------------------------------- /search


def test_search_runs_on_the_engine_and_reranks(app: Any, engine: tuple[str, str]) -> None:
    kind, url = engine
    body = app.post(
        "/search", json={"query": "waterproof hiking boots", "size": 10, "window": 50}
    ).json()
    assert body["engine"] == kind and body["rerank_status"] == "ok"
    assert body["window"] == 50 and len(body["hits"]) == 10
    assert (
        body["total"]
        == direct(url, {"query": multi_match("waterproof hiking boots")})["hits"]["total"]["value"]
    )
    allowed = set(FieldMap().source_fields())
    for hit in body["hits"]:
        assert 0 <= hit["model_score"] <= 1 and hit["reranked"]
        assert set(hit["source"]) <= allowed and hit["source"]["title"]
    assert [h["score"] for h in body["hits"]] == sorted(
        (h["score"] for h in body["hits"]), reverse=True
    )


def test_reranking_beats_the_engine_order(app: Any, engine: tuple[str, str]) -> None:
    _, url = engine
    engine_p, reranked_p = [], []
    for family in load_queries():
        relevant = set(family["relevant_ids"])
        top = direct_ids(url, multi_match(family["query"]), 10)
        engine_p.append(sum(i in relevant for i in top) / 10)
        hits = app.post("/search", json={"query": family["query"], "size": 10}).json()["hits"]
        reranked_p.append(sum(h["id"] in relevant for h in hits) / 10)
    mean_engine = sum(engine_p) / len(engine_p)
    mean_reranked = sum(reranked_p) / len(reranked_p)
    assert mean_reranked >= mean_engine + 0.05, (mean_engine, mean_reranked)


def test_filters_restrict_the_first_stage(app: Any, engine: tuple[str, str]) -> None:
    _, url = engine
    filters = {
        "term": {"category": "Footwear", "in_stock": True},
        "range": {"price": {"lte": 80}},
    }
    body = app.post(
        "/search", json={"query": "running shoes", "filters": filters, "size": 50}
    ).json()
    assert body["hits"]
    for hit in body["hits"]:
        source = hit["source"]
        assert source["category"] == "Footwear" and source["in_stock"] is True
        assert source["price"] <= 80
    expected = direct(
        url,
        {
            "query": {
                "bool": {
                    "must": [multi_match("running shoes")],
                    "filter": [
                        {"term": {"category": "Footwear"}},
                        {"term": {"in_stock": True}},
                        {"range": {"price": {"lte": 80}}},
                    ],
                }
            }
        },
    )
    assert body["total"] == expected["hits"]["total"]["value"]


def test_terms_filter_takes_a_list(app: Any) -> None:
    brands = ["TrailPeak", "StrideLab"]
    body = app.post(
        "/search", json={"query": "hiking", "filters": {"term": {"brand": brands}}, "size": 30}
    ).json()
    assert body["hits"] and {h["source"]["brand"] for h in body["hits"]} <= set(brands)


def test_paging_walks_one_reranked_order(app: Any) -> None:
    def ids(**page: int) -> list[str]:
        response = app.post("/search", json={"query": "running shoes", "window": 100, **page})
        return [h["id"] for h in response.json()["hits"]]

    whole = ids(size=30)
    assert ids(**{"from": 10, "size": 10}) == whole[10:20]
    assert ids(**{"from": 20, "size": 10}) == whole[20:30]


def test_beyond_the_window_the_engine_order_continues(app: Any, engine: tuple[str, str]) -> None:
    _, url = engine
    body = app.post("/search", json={"query": "hiking", "window": 5, "size": 15}).json()
    tail = [h for h in body["hits"] if not h["reranked"]]
    assert len(tail) == 10 and all(h["model_score"] is None for h in tail)
    assert [h["id"] for h in tail] == direct_ids(url, multi_match("hiking"), 15)[5:]


def test_raw_query_runs_instead_of_the_built_one(app: Any, engine: tuple[str, str]) -> None:
    _, url = engine
    raw = {
        "bool": {
            "must": [{"match": {"title": "socks"}}],
            "filter": [{"term": {"category": "Socks & Accessories"}}],
        }
    }
    body = app.post(
        "/search", json={"query": "wool hiking socks", "raw_query": {"query": raw}, "size": 20}
    ).json()
    assert body["hits"] and body["rerank_status"] == "ok"
    assert all(h["source"]["category"] == "Socks & Accessories" for h in body["hits"])
    assert body["total"] == direct(url, {"query": raw})["hits"]["total"]["value"]


EDGE_DOCS = [
    {
        "sku": "E1",
        "name": "Trail running shoes",
        "points": "Grippy outsole",
        "stock": 3,
        "pictures": "images/p00001.png",
        "internal_note": "not for the reranker",
    },
    {"sku": "E2", "name": "Trail running socks", "internal_note": "no points, no picture"},
    {"sku": "E3", "points": ["Trail running vest", "Two bottle pockets"], "pictures": []},
    {"sku": "E4", "name": "Trail running cap", "points": [], "pictures": None, "stock": 0},
    {"sku": "E5", "name": ["Trail running", "belt"], "points": [None, "Fits phones"]},
]


def test_field_map_reads_other_names_and_missing_fields(
    engine: tuple[str, str], client_factory: Any
) -> None:
    kind, url = engine
    fields = {
        "id": "sku",
        "title": "name",
        "selling_points": "points",
        "image_urls": "pictures",
        "business": ["stock", "price"],
    }
    settings = Settings(engine=engine_config(kind, url), fields=fields)
    report = asyncio.run(load_documents(settings, "rerank-edge", EDGE_DOCS, recreate=True))
    assert report.indexed == len(EDGE_DOCS) and not report.failures
    client = client_factory(
        engine=engine_config(kind, url, search_fields={"name": 2.0, "points": 1.0}),
        fields=fields,
    )
    response = client.post(
        "/search", json={"query": "trail running", "index": "rerank-edge", "size": 10}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["rerank_status"] == "ok"
    assert sorted(h["id"] for h in body["hits"]) == ["E1", "E2", "E3", "E4", "E5"]
    for hit in body["hits"]:
        assert 0 <= hit["model_score"] <= 1
        assert "internal_note" not in hit["source"]
        assert set(hit["source"]) <= {"sku", "name", "points", "pictures", "stock", "price"}


def test_index_command_reports_refused_documents_and_goes_on(
    engine: tuple[str, str], tmp_path: Path
) -> None:
    kind, url = engine
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(
        '{"id": "a", "title": "ok", "price": 3}\n'
        "not json\n"
        '{"id": "b", "title": "bad price", "price": "abc"}\n'
        "\n"
        "[1, 2]\n"
        '{"id": "c", "title": "fine too"}\n',
        encoding="utf-8",
    )
    args = ["index", "--engine", kind, "--url", url, "--catalog", str(catalog)]
    result = CliRunner().invoke(
        main, [*args, "--index", "rerank-bad", "--recreate", "--no-progress"]
    )
    assert result.exit_code == 1, result.output
    assert "2 of 5 documents" in result.output
    assert "line 2: not JSON" in result.output and "line 5: not a JSON object" in result.output
    assert "line 3 (id b):" in result.output and "[price]" in result.output
    count = httpx.get(f"{url}/rerank-bad/_count", trust_env=False).json()["count"]
    assert count == 2


# ------------------------------------------------------------------- /{index}/_search


def drop_in(app: Any, body: dict[str, Any], index: str = "products") -> Any:
    return app.post(f"/{index}/_search", json=body)


def test_drop_in_answers_in_the_engine_shape(app: Any, engine: tuple[str, str]) -> None:
    kind, url = engine
    query = {"multi_match": {"query": "espresso machine", "fields": ["title^3", "selling_points"]}}
    response = drop_in(app, {"query": query, "size": 5, "ext": {"rerank": {"window": 50}}})
    assert response.status_code == 200, response.text
    body = response.json()
    engine_answer = direct(url, {"query": query, "size": 50})
    assert body["hits"]["total"] == engine_answer["hits"]["total"]
    assert isinstance(body["took"], int) and body["timed_out"] is False
    assert body["_shards"]["failed"] == 0
    hits = body["hits"]["hits"]
    assert len(hits) == 5
    assert {h["_id"] for h in hits} <= {h["_id"] for h in engine_answer["hits"]["hits"]}
    for hit in hits:
        assert hit["_index"] == "products" and hit["_source"]["title"]
        rerank = hit["_rerank"]
        assert rerank["reranked"] and 0 <= rerank["model_score"] <= 1
        assert rerank["band"] in {"strong", "medium", "weak"}
    scores = [h["_score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and body["hits"]["max_score"] == scores[0]
    assert body["rerank"]["status"] == "ok" and body["rerank"]["window"] == 50
    assert body["rerank"]["engine"] == kind and body["rerank"]["rules_version"]
    assert "engine_ms" in body["rerank"]["timings"]


def test_drop_in_paging_walks_the_reranked_window(app: Any) -> None:
    query = {"match": {"title": "running shoes"}}

    def page(offset: int, size: int) -> list[str]:
        body = {"query": query, "from": offset, "size": size, "ext": {"rerank": {"window": 100}}}
        return [h["_id"] for h in drop_in(app, body).json()["hits"]["hits"]]

    whole = page(0, 30)
    assert page(20, 10) == whole[20:30]  # page 3 of size 10 is hits 21-30 of the reranked order


def test_drop_in_takes_get_with_a_body_and_url_paging(app: Any) -> None:
    body = {"query": {"match": {"title": "yoga mat"}}}
    posted = [h["_id"] for h in drop_in(app, {**body, "size": 7}).json()["hits"]["hits"]]
    got = app.request(
        "GET",
        "/products/_search?size=7",
        content=json.dumps(body),
        headers={"content-type": "application/json"},
    )
    assert got.status_code == 200, got.text
    assert [h["_id"] for h in got.json()["hits"]["hits"]] == posted


def test_drop_in_without_query_text_is_400(app: Any) -> None:
    only_filter = {"query": {"bool": {"filter": [{"term": {"category": "Footwear"}}]}}}
    response = drop_in(app, only_filter)
    assert response.status_code == 400
    error = response.json()["error"]
    assert "no query text" in error["reason"] and response.json()["status"] == 400
    assert error["sidecar"]["field"] == "ext.rerank.query"
    # the same body with the text in ext.rerank is fine, and the body's filter still holds
    response = drop_in(app, {**only_filter, "ext": {"rerank": {"query": "running shoes"}}})
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]["hits"]
    assert hits and all(h["_source"]["category"] == "Footwear" for h in hits)
    assert all(h["_rerank"]["reranked"] for h in hits)


def test_drop_in_reads_the_text_from_opensearchs_query_context(app: Any) -> None:
    """A body written for an OpenSearch rerank pipeline (ext.rerank.query_context) reranks with
    the text it names, as ext.rerank.query would."""
    only_filter = {"query": {"bool": {"filter": [{"term": {"category": "Footwear"}}]}}}

    def ids(rerank: dict[str, Any], body: dict[str, Any]) -> list[str]:
        response = drop_in(app, {**body, "size": 10, "ext": {"rerank": rerank}})
        assert response.status_code == 200, response.text
        return [h["_id"] for h in response.json()["hits"]["hits"]]

    by_query = ids({"query": "trail running shoes"}, only_filter)
    assert by_query
    assert ids({"query_context": {"query_text": "trail running shoes"}}, only_filter) == by_query
    with_clause = {
        "query": {
            "bool": {
                "must": [{"match": {"title": {"query": "waterproof hiking boots"}}}],
                "filter": [{"term": {"category": "Footwear"}}],
            }
        }
    }
    path = {"query_text_path": "query.bool.must[0].match.title.query"}
    by_path = ids({"query_context": path}, with_clause)
    assert by_path == ids({"query": "waterproof hiking boots"}, with_clause)
    assert by_path != ids({"query": "trail running shoes"}, with_clause)


def test_drop_in_source_is_trimmed_as_asked(app: Any) -> None:
    query = {"match": {"title": "sleeping bag"}}
    hits = drop_in(app, {"query": query, "_source": ["title"]}).json()["hits"]["hits"]
    assert hits and all(set(h["_source"]) == {"title"} for h in hits)
    # the model still read the selling points the caller did not ask for
    assert all(h["_rerank"]["model_score"] is not None for h in hits)
    hits = drop_in(app, {"query": query, "_source": False}).json()["hits"]["hits"]
    assert hits and all("_source" not in h for h in hits)


def test_drop_in_beyond_the_window_keeps_engine_order(app: Any, engine: tuple[str, str]) -> None:
    _, url = engine
    query = {"match": {"title": "jacket"}}
    hits = drop_in(app, {"query": query, "size": 10, "ext": {"rerank": {"window": 4}}}).json()[
        "hits"
    ]["hits"]
    tail = [h["_id"] for h in hits if not h["_rerank"]["reranked"]]
    assert tail and tail == direct_ids(url, query, 10)[4 : 4 + len(tail)]


def test_drop_in_passes_aggregations_through(app: Any, engine: tuple[str, str]) -> None:
    _, url = engine
    body = {
        "query": {"match": {"title": "hiking"}},
        "aggs": {"by_category": {"terms": {"field": "category"}}},
    }
    answer = drop_in(app, body).json()
    assert answer["aggregations"] == direct(url, body)["aggregations"]
    assert answer["aggregations"]["by_category"]["buckets"]


def test_drop_in_sorted_by_a_field_keeps_the_engine_order(
    app: Any, engine: tuple[str, str]
) -> None:
    _, url = engine
    body = {"query": {"match": {"title": "backpack"}}, "sort": [{"price": "asc"}], "size": 8}
    answer = drop_in(app, body).json()
    assert answer["rerank"]["status"] == "skipped"
    ids = [h["_id"] for h in answer["hits"]["hits"]]
    assert ids == [h["_id"] for h in direct(url, body)["hits"]["hits"]]
    prices = [h["_source"]["price"] for h in answer["hits"]["hits"]]
    assert prices == sorted(prices)


# ------------------------------------------------------------------------------ failures


def test_engine_down_is_503_naming_the_engine(engine: tuple[str, str], client_factory: Any) -> None:
    kind, _ = engine
    client = client_factory(engine=engine_config(kind, f"http://127.0.0.1:{closed_port()}"))
    response = client.post("/search", json={"query": "hiking boots"})
    assert response.status_code == 503
    assert response.json()["error"] == "engine_unavailable"
    assert response.json()["engine"] == kind and kind in response.json()["message"]
    response = drop_in(client, {"query": {"match": {"title": "hiking boots"}}})
    assert response.status_code == 503 and response.json()["status"] == 503
    assert response.json()["error"]["sidecar"]["engine"] == kind
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "engine" in ready.json()["not_ready"]


def test_slow_engine_is_504_within_the_deadline(
    engine: tuple[str, str], client_factory: Any
) -> None:
    kind, url = engine
    host, port = httpx.URL(url).host, httpx.URL(url).port
    assert port is not None
    proxy = SlowProxy(host, port, delay=5.0).start()
    try:
        client = client_factory(engine=engine_config(kind, proxy.url))
        for call in (
            lambda: client.post("/search", json={"query": "hiking boots", "timeout_ms": 1000}),
            lambda: drop_in(
                client,
                {"query": {"match": {"title": "boots"}}, "ext": {"rerank": {"timeout_ms": 1000}}},
            ),
        ):
            started = time.perf_counter()
            response = call()
            elapsed = time.perf_counter() - started
            assert response.status_code == 504, response.text
            assert kind in response.text
            assert elapsed < 1.0 + 0.5, elapsed  # the deadline plus a small margin
    finally:
        proxy.stop()


def test_bad_query_is_400_with_the_engines_reason(app: Any, engine: tuple[str, str]) -> None:
    kind, _ = engine
    response = app.post("/search", json={"query": "hiking", "filters": {"term": {"sales": "many"}}})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "bad_query" and body["engine"] == kind
    assert 'For input string: "many"' in body["message"]
    bad_range = {
        "bool": {
            "must": [{"match": {"title": "boots"}}],
            "filter": [{"range": {"price": {"gte": "cheap"}}}],
        }
    }
    response = drop_in(app, {"query": bad_range})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "query_shard_exception" and "cheap" in error["reason"]


def test_unknown_index_is_404(app: Any) -> None:
    response = app.post("/search", json={"query": "boots", "index": "no-such-index"})
    assert response.status_code == 404 and response.json()["field"] == "index"
    response = drop_in(app, {"query": {"match": {"title": "boots"}}}, index="no-such-index")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "index_not_found_exception"


# ---------------------------------------------- the drop-in on the embedded default (no engine)


def test_drop_in_on_the_embedded_engine_takes_a_match_query(client: Any) -> None:
    response = drop_in(client, {"query": {"match": {"title": "yoga mat"}}, "size": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["hits"]["hits"]) == 3 and body["rerank"]["engine"] == "embedded"
    assert all(h["_rerank"]["reranked"] for h in body["hits"]["hits"])


def test_drop_in_on_the_embedded_engine_refuses_dsl_it_cannot_run(client: Any) -> None:
    body = {"query": {"bool": {"must": [{"match": {"title": "mat"}}]}}}
    response = drop_in(client, body)
    assert response.status_code == 400
    assert "embedded engine runs query text only" in response.json()["error"]["reason"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{not json", "body"),
        ("[1, 2]", "body"),
        (
            '{"query": {"match": {"title": "mat"}}, "ext": {"rerank": {"windows": 5}}}',
            "ext.rerank.windows",
        ),
        (
            '{"query": {"match": {"title": "mat"}}, "ext": {"rerank": {"window": 100000}}}',
            "ext.rerank.window",
        ),
        ('{"query": {"match": {"title": "mat"}}, "size": -1}', "size"),
        (
            '{"query": {"match": {"title": "mat"}}, "ext": {"rerank": {"query": "mat",'
            ' "query_context": {"query_text": "mat"}}}}',
            "ext.rerank.query_context",
        ),
        (
            '{"ext": {"rerank": {"query_context": {"query_text": "mat",'
            ' "query_text_path": "query.match.title"}}}}',
            "ext.rerank.query_context",
        ),
        ('{"ext": {"rerank": {"query_context": "mat"}}}', "ext.rerank.query_context"),
        (
            '{"ext": {"rerank": {"query_context": {"text": "mat"}}}}',
            "ext.rerank.query_context.text",
        ),
        (
            '{"query": {"match": {"title": "mat"}},'
            ' "ext": {"rerank": {"query_context": {"query_text_path": "query.match.name"}}}}',
            "ext.rerank.query_context.query_text_path",
        ),
        (
            '{"query": {"match": {"title": {"query": "mat"}}},'
            ' "ext": {"rerank": {"query_context": {"query_text_path": "query.match.title"}}}}',
            "ext.rerank.query_context.query_text_path",
        ),
    ],
)
def test_drop_in_bad_bodies_are_400_in_the_engine_error_shape(
    client: Any, body: str, field: str
) -> None:
    response = client.post(
        "/products/_search", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["status"] == 400 and answer["error"]["root_cause"][0]["reason"]
    assert answer["error"]["sidecar"]["field"] == field


# ----------------------------------------------- credentials reach the engine (a recording peer)


class _Refusing(http.server.BaseHTTPRequestHandler):
    """Answers every request 401 the way a secured engine does, and records its headers."""

    seen: ClassVar[list[dict[str, str]]] = []

    def _refuse(self) -> None:
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        body = json.dumps(
            {
                "error": {"type": "security_exception", "reason": "missing authentication"},
                "status": 401,
            }
        ).encode()
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.send_header("x-elastic-product", "Elasticsearch")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _refuse

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("kind", ["elasticsearch", "opensearch"])
@pytest.mark.parametrize(
    ("auth", "header"),
    [
        ({"username": "shop", "password": "s3cret"}, "Basic c2hvcDpzM2NyZXQ="),
        ({"api_key": "a2V5OnZhbHVl"}, "ApiKey a2V5OnZhbHVl"),
    ],
)
def test_credentials_are_sent_and_a_refusal_is_503(
    client_factory: Any, kind: str, auth: dict[str, str], header: str
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Refusing.seen.clear()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        client = client_factory(engine=engine_config(kind, url, **auth))
        response = client.post("/search", json={"query": "boots"})
    finally:
        server.shutdown()
        server.server_close()
    assert response.status_code == 503, response.text
    assert "credentials (401)" in response.json()["message"] and kind in response.json()["message"]
    assert _Refusing.seen and all(h.get("authorization") == header for h in _Refusing.seen)
