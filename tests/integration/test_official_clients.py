"""The engines' official clients, unchanged, against a sidecar served by uvicorn.

`elasticsearch` 8 and 9 in front of Elasticsearch, `opensearch-py` 2 and 3 in front of
OpenSearch, the JavaScript `@elastic/elasticsearch` and `@opensearch-project/opensearch` and the
Java `elasticsearch-java` and `opensearch-java` (tests/clients; node, npm, mvn and a JDK, else
skipped) the same way, and all of them on the embedded default. Each runs info, search,
msearch, count, get and mget through the sidecar (in a subprocess of its own; see
official_clients.py) and the test checks: searches come back in the sidecar's reranked order
with the `rerank` extras in the raw body, and everything else equals what the engine answers
the same client directly (on the embedded default: what the catalog holds).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from sidecar.app import create_app
from sidecar.config import Settings
from sidecar.demo import load_catalog
from tests.conftest import make_settings
from tests.integration import official_clients
from tests.live_server import serve_in_thread

pytestmark = pytest.mark.slow

SEARCH_FIELDS = {"title": 3.0, "selling_points": 1.5, "brand.text": 2.0, "category.text": 1.0}
BOOTS = {
    "query": {"match": {"title": "waterproof hiking boots"}},
    "size": 10,
    "ext": {"rerank": {"window": 50}},
}
ESPRESSO = {"query": {"multi_match": {"query": "espresso machine", "fields": ["title^3"]}}}
PLAN: list[dict[str, Any]] = [
    {"op": "info"},
    {"op": "search", "index": "products", "body": BOOTS},
    {
        "op": "msearch",
        "searches": [
            {"index": "products"},
            BOOTS,
            {},  # the path's index, else the default one
            ESPRESSO,
            {"index": "no-such-index"},
            ESPRESSO,
        ],
    },
    {"op": "count", "index": "products"},
    {"op": "count", "index": "products", "body": {"query": {"match": {"title": "boots"}}}},
    {"op": "get", "index": "products", "id": "p00001"},
    {"op": "get", "index": "products", "id": "no-such-id"},
    {"op": "mget", "index": "products", "body": {"ids": ["p00001", "p00002", "no-such-id"]}},
]
INFO, SEARCH, MSEARCH, COUNT_ALL, COUNT_BOOTS, GET, GET_MISSING, MGET = range(len(PLAN))


@dataclass
class LiveSidecar:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve(settings: Settings, scorer: Any) -> LiveSidecar:
    """A real HTTP server (the clients need one) on a free port, sharing the loaded model."""
    app = create_app(settings, wait_for_model=True, scorer=scorer)
    url, server, thread = serve_in_thread(app, start_timeout_s=120)
    return LiveSidecar(url, server, thread)


@pytest.fixture(scope="module")
def sidecars(minilm: Any) -> Iterator[Any]:
    """sidecar(kind, url) -> a running sidecar in front of that engine, one per engine."""
    started: dict[str, LiveSidecar] = {}

    def sidecar(kind: str, url: str | None = None) -> LiveSidecar:
        if kind not in started:
            engine: dict[str, Any] = {"kind": kind}
            if url is not None:
                engine.update(urls=[url], search_fields=SEARCH_FIELDS)
            started[kind] = serve(make_settings(engine=engine), minilm)
        return started[kind]

    yield sidecar
    for live in started.values():
        live.stop()


def sidecar_order(url: str, body: dict[str, Any], index: str = "products") -> list[str]:
    """The reranked order the sidecar itself answers for `body`."""
    response = httpx.post(f"{url}/{index}/_search", json=body, trust_env=False, timeout=60)
    assert response.status_code == 200, response.text
    return [h["_id"] for h in response.json()["hits"]["hits"]]


def check_reranked(answer: dict[str, Any], url: str, body: dict[str, Any]) -> None:
    hits = answer["hits"]["hits"]
    assert hits and answer["rerank"]["status"] == "ok", answer.get("rerank")
    assert all(h["_rerank"]["reranked"] and 0 <= h["_rerank"]["model_score"] <= 1 for h in hits)
    scores = [h["_score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert [h["_id"] for h in hits] == sidecar_order(url, body)


def check_searches(answers: list[dict[str, Any]], url: str) -> None:
    """search and msearch: the sidecar's reranked order; the bad item fails alone."""
    search = answers[SEARCH]
    assert search["ok"], search
    check_reranked(search["body"], url, BOOTS)
    if "typed_ids" in search:  # the Java client's typed response: the same order
        assert search["typed_ids"] == [h["_id"] for h in search["body"]["hits"]["hits"]]
    msearch = answers[MSEARCH]
    assert msearch["ok"], msearch
    boots, espresso, missing = msearch["body"]["responses"]
    assert boots["status"] == 200 and espresso["status"] == 200
    check_reranked(boots, url, BOOTS)
    check_reranked(espresso, url, ESPRESSO)
    assert missing["status"] == 404
    assert missing["error"]["type"] == "index_not_found_exception"


def without_ext(step: dict[str, Any]) -> dict[str, Any]:
    """A plan step or a search body without `ext` (which the engines refuse)."""
    if "op" in step:
        return {**step, "body": without_ext(step["body"])}
    return {k: v for k, v in step.items() if k != "ext"}


def engine_pairs() -> list[Any]:
    """Each client in front of its own engine (the combinations the engines support)."""
    return [
        pytest.param(kind, name, id=f"{name}-{kind}")
        for name, kind in official_clients.ALL_CLIENTS.items()
    ]


def needs_tools(client: str) -> None:
    missing = official_clients.missing_tool(client)
    if missing:
        pytest.skip(f"{client}: needs {missing}")


@pytest.mark.engine
@pytest.mark.parametrize(("engine", "client"), engine_pairs(), indirect=["engine"])
def test_official_client_through_the_sidecar_on_the_engine(
    engine: tuple[str, str], client: str, sidecars: Any
) -> None:
    needs_tools(client)
    kind, engine_url = engine
    live = sidecars(kind, engine_url)
    through = official_clients.run(client, live.url, PLAN)
    direct = official_clients.run(client, engine_url, PLAN)
    answers = through["answers"]
    check_searches(answers, live.url)
    # the engine's own answer to the same calls: equal, errors included (the minimal
    # Elasticsearch distribution answers GET / with a 405, and so does the sidecar then)
    for step in (INFO, COUNT_ALL, COUNT_BOOTS, GET, GET_MISSING, MGET):
        assert answers[step] == direct["answers"][step], (PLAN[step], answers[step])
    assert answers[GET]["ok"] and answers[GET_MISSING]["status"] == 404
    # the search's total is the engine's, and the bad msearch item fails as the engine's does
    # (the engine gets the searches without `ext.rerank`: Elasticsearch refuses it, and
    # OpenSearch with ML Commons reads it as its own rerank processor's)
    searches = [without_ext(item) for item in PLAN[MSEARCH]["searches"]]
    plain = official_clients.run(
        client, engine_url, [without_ext(PLAN[SEARCH]), {"op": "msearch", "searches": searches}]
    )
    engine_search = plain["answers"][0]["body"]
    assert answers[SEARCH]["body"]["hits"]["total"] == engine_search["hits"]["total"]
    engine_missing = plain["answers"][1]["body"]["responses"][2]
    missing = answers[MSEARCH]["body"]["responses"][2]
    assert missing["error"]["type"] == engine_missing["error"]["type"]
    assert missing["status"] == engine_missing["status"]


@pytest.mark.parametrize("client", sorted(official_clients.ALL_CLIENTS))
def test_official_client_on_the_embedded_default(client: str, sidecars: Any) -> None:
    needs_tools(client)
    live = sidecars("embedded")
    result = official_clients.run(client, live.url, PLAN)
    answers = result["answers"]
    info = answers[INFO]["body"]
    # opensearch-java's typed InfoResponse requires `version.distribution` (OpenSearch's field);
    # the Elasticsearch clients, typed ones included, read the same answer without it
    assert info["version"]["distribution"] == "rerank-sidecar-embedded"
    assert all(a["ok"] for i, a in enumerate(answers) if i != GET_MISSING), answers
    is_elasticsearch = official_clients.ALL_CLIENTS[client] == "elasticsearch"
    major = result["version"].split(".")[0] if is_elasticsearch else "8"
    assert info["version"]["number"].split(".")[0] == major
    assert info["tagline"] == "You Know, for Search"
    check_searches(answers, live.url)
    catalog = {p["id"]: p for p in load_catalog()}
    assert answers[COUNT_ALL]["body"]["count"] == len(catalog)
    boots_total = httpx.post(
        f"{live.url}/products/_search",
        json={"query": {"match": {"title": "boots"}}, "size": 1},
        trust_env=False,
        timeout=60,
    ).json()["hits"]["total"]["value"]
    assert answers[COUNT_BOOTS]["body"]["count"] == boots_total < len(catalog)
    got = answers[GET]["body"]
    assert got["found"] and got["_id"] == "p00001" and got["_source"] == catalog["p00001"]
    missing = answers[GET_MISSING]
    assert missing["status"] == 404 and missing["body"]["found"] is False
    docs = answers[MGET]["body"]["docs"]
    assert [d["found"] for d in docs] == [True, True, False]
    assert [d["_source"] for d in docs[:2]] == [catalog["p00001"], catalog["p00002"]]


def test_the_installed_elasticsearch_client_runs_on_the_embedded_demo(minilm: Any) -> None:
    """The check a new user makes: the demo's defaults (no allowlist change), the client from
    the venv, in process: info, search, count, get and msearch raise nothing."""
    from elasticsearch import Elasticsearch

    live = serve(Settings(rules={"watch": False}), minilm)
    try:
        with Elasticsearch(live.url, request_timeout=60) as client:
            assert client.info()["version"]["number"]
            assert client.ping() and client.indices.exists(index="products")
            answer = client.search(index="products", query={"match": {"title": "yoga mat"}})
            assert answer["hits"]["hits"] and "rerank" in answer.body
            assert client.count(index="products")["count"] == len(load_catalog())
            assert client.get(index="products", id="p00001")["_source"]["id"] == "p00001"
            many = client.msearch(
                searches=[{"index": "products"}, {"query": {"match": {"title": "tent"}}}]
            )
            assert many["responses"][0]["status"] == 200 and many["responses"][0]["hits"]["hits"]
    finally:
        live.stop()
