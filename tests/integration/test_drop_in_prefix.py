"""An index named like one of the sidecar's own routes (`search`, `metrics`, `ui`...) cannot be
reached at the sidecar's root, where its routes come first; under `/_engine` the drop-in is
alone, and the official clients take that URL as their node (its path becomes their prefix)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sidecar.config import Settings
from sidecar.demo import load_catalog
from tests.integration.test_official_clients import SEARCH_FIELDS, LiveSidecar, serve

# a name the sidecar's own routes shadow at its root: POST /search is the sidecar's search
SHADOWED = "search"


@pytest.fixture(scope="module")
def embedded_as_search(minilm: Any) -> Iterator[LiveSidecar]:
    """The embedded demo with its catalog in an index called `search`."""
    live = serve(Settings(rules={"watch": False}, engine={"default_index": SHADOWED}), minilm)
    yield live
    live.stop()


def test_the_official_client_reaches_an_index_named_search_under_the_prefix(
    embedded_as_search: LiveSidecar,
) -> None:
    from elasticsearch import Elasticsearch

    catalog = load_catalog()
    with Elasticsearch(f"{embedded_as_search.url}/_engine", request_timeout=60) as client:
        assert client.info()["tagline"] == "You Know, for Search"
        assert client.indices.exists(index=SHADOWED)
        answer = client.search(index=SHADOWED, query={"match": {"title": "hiking boots"}})
        assert answer["hits"]["hits"] and answer.body["rerank"]["status"] == "ok"
        assert answer["hits"]["hits"][0]["_index"] == SHADOWED
        assert client.count(index=SHADOWED)["count"] == len(catalog)
        got = client.get(index=SHADOWED, id=catalog[0]["id"])
        assert got["_source"] == catalog[0]
        many = client.msearch(
            searches=[{"index": SHADOWED}, {"query": {"match": {"title": "tent"}}}]
        )
        assert many["responses"][0]["status"] == 200 and "rerank" in many["responses"][0]


def test_at_the_root_the_sidecars_own_routes_keep_the_name(
    embedded_as_search: LiveSidecar,
) -> None:
    url = embedded_as_search.url
    # the sidecar's 404 (its shape, not the engine's) for the index's APIs at the root ...
    counted = httpx.get(f"{url}/{SHADOWED}/_count", trust_env=False, timeout=30)
    assert counted.status_code == 404 and counted.json()["error"] == "not_found"
    # ... and the sidecar's own /search and /metrics, unchanged beside the prefix
    own = httpx.post(f"{url}/search", json={"query": "tent"}, trust_env=False, timeout=60)
    assert own.status_code == 200 and "rerank_status" in own.json()
    under = httpx.get(f"{url}/_engine/{SHADOWED}/_count", trust_env=False, timeout=30)
    assert under.status_code == 200 and under.json()["count"] == len(load_catalog())
    # under the prefix `metrics` is an index name too: outside the allowlist, the engine's 403
    metrics = httpx.get(f"{url}/_engine/metrics/_count", trust_env=False, timeout=30)
    assert metrics.status_code == 403
    assert metrics.json()["error"]["type"] == "security_exception"


@pytest.mark.engine
def test_a_real_engines_index_named_search_passes_through_under_the_prefix(
    engine: tuple[str, str], minilm: Any
) -> None:
    kind, engine_url = engine
    products = load_catalog()[:5]
    direct = httpx.Client(base_url=engine_url, trust_env=False, timeout=30)
    direct.delete(f"/{SHADOWED}")
    lines = "".join(
        f'{{"index":{{"_id":"{p["id"]}"}}}}\n' + httpx.Response(200, json=p).text + "\n"
        for p in products
    )
    loaded = direct.post(
        f"/{SHADOWED}/_bulk?refresh=true",
        content=lines,
        headers={"content-type": "application/x-ndjson"},
    )
    assert loaded.status_code == 200 and not loaded.json()["errors"]
    engine_settings = {"kind": kind, "urls": [engine_url], "search_fields": SEARCH_FIELDS}
    # the allowlist holds under the prefix as at the root: `search` only
    live = serve(
        Settings(rules={"watch": False}, engine={**engine_settings, "allowed_indices": [SHADOWED]}),
        minilm,
    )
    closing = [direct]
    try:
        through = httpx.Client(base_url=f"{live.url}/_engine", trust_env=False, timeout=60)
        closing.append(through)
        assert through.head(f"/{SHADOWED}").status_code == 200
        assert through.get(f"/{SHADOWED}/_count").json() == direct.get(f"/{SHADOWED}/_count").json()
        assert through.get(f"/{SHADOWED}/_doc/{products[0]['id']}").json()["_source"] == products[0]
        searched = through.post(
            f"/{SHADOWED}/_search", json={"query": {"match": {"title": products[0]["title"]}}}
        )
        assert searched.status_code == 200 and searched.json()["rerank"]["status"] == "ok"
        assert {h["_id"] for h in searched.json()["hits"]["hits"]} <= {p["id"] for p in products}
        # outside the allowlist: refused under the prefix as at the root
        refused = through.get("/products/_count")
        assert refused.status_code == 403
        assert refused.json()["error"]["type"] == "security_exception"
    finally:
        live.stop()
        direct.delete(f"/{SHADOWED}")
        for client in closing:
            client.close()
