"""The embedded default speaks the read-only Elasticsearch subset of the drop-in, so a client can
be tried with no engine running: cluster info, health, index existence, count, get (one and
many), the mapping; `_msearch` and URI search are reranked. Writes, other APIs and indices
outside the allowlist are refused; no request answers a 500."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.demo import load_catalog

CATALOG = {p["id"]: p for p in load_catalog()}


def test_info_and_health_look_like_elasticsearch(client: Any) -> None:
    info = client.get("/")
    assert info.status_code == 200 and info.headers["x-elastic-product"] == "Elasticsearch"
    assert info.headers["content-type"] == "application/json"
    body = info.json()
    assert body["version"]["number"] == "8.0.0" and body["tagline"] == "You Know, for Search"
    v9 = "application/vnd.elasticsearch+json; compatible-with=9"
    asked = client.get("/", headers={"accept": v9})
    assert asked.json()["version"]["number"] == "9.0.0"
    assert asked.headers["content-type"] == "application/vnd.elasticsearch+json;compatible-with=9"
    assert client.head("/").status_code == 200
    assert client.get("/_cluster/health").json()["status"] == "green"


def test_index_existence_count_and_mapping(client: Any) -> None:
    exists = client.head("/products")
    assert exists.status_code == 200 and exists.headers["x-elastic-product"] == "Elasticsearch"
    assert client.head("/no-such-index").status_code == 404
    assert client.get("/products/_count").json()["count"] == len(CATALOG)
    searched = client.post(
        "/products/_search", json={"query": {"match": {"title": "boots"}}, "size": 1}
    )
    total = searched.json()["hits"]["total"]["value"]
    counted = client.post("/products/_count", json={"query": {"match": {"title": "boots"}}})
    assert counted.json()["count"] == total < len(CATALOG)
    assert client.get("/products/_count", params={"q": "boots"}).json()["count"] == total
    properties = client.get("/products/_mapping").json()["products"]["mappings"]["properties"]
    assert properties["title"]["type"] == "text" and properties["price"]["type"] == "double"
    assert properties["in_stock"]["type"] == "boolean" and properties["sales"]["type"] == "long"
    assert properties["color"]["type"] == "keyword"
    missing = client.get("/no-such-index/_count")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "index_not_found_exception"


def test_documents_by_id_one_and_many(client: Any) -> None:
    got = client.get("/products/_doc/p00001").json()
    assert got["found"] and got["_source"] == CATALOG["p00001"] and got["_index"] == "products"
    missing = client.get("/products/_doc/no-such-id")
    assert missing.status_code == 404 and missing.json() == {
        "_index": "products",
        "_id": "no-such-id",
        "found": False,
    }
    assert client.head("/products/_doc/p00001").status_code == 200
    assert client.head("/products/_doc/no-such-id").status_code == 404
    assert client.get("/products/_source/p00002").json() == CATALOG["p00002"]
    trimmed = client.get("/products/_doc/p00001", params={"_source_includes": "title,price"})
    assert set(trimmed.json()["_source"]) == {"title", "price"}
    many = client.post("/products/_mget", json={"ids": ["p00003", "nope"]}).json()["docs"]
    assert [d["found"] for d in many] == [True, False]
    docs = client.post(
        "/_mget",
        json={
            "docs": [
                {"_index": "products", "_id": "p00004", "_source": ["title"]},
                {"_index": "no-such-index", "_id": "p00004"},
            ]
        },
    ).json()["docs"]
    assert docs[0]["_source"] == {"title": CATALOG["p00004"]["title"]}
    assert docs[1]["error"]["type"] == "index_not_found_exception"


def test_msearch_and_uri_search_are_reranked(client: Any) -> None:
    tent_query = {"query": {"match": {"title": "tent"}}, "size": 3}
    lines = [{}, tent_query, {"index": "nope"}, tent_query]
    body = "".join(json.dumps(line) + "\n" for line in lines)
    answer = client.post(
        "/_msearch",
        content=body,
        headers={"content-type": "application/vnd.elasticsearch+x-ndjson; compatible-with=9"},
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/vnd.elasticsearch+json;compatible-with=9"
    tent, nope = answer.json()["responses"]
    assert tent["status"] == 200 and len(tent["hits"]["hits"]) == 3
    assert all(h["_rerank"]["reranked"] for h in tent["hits"]["hits"])
    assert nope["status"] == 404
    uri = client.get("/products/_search", params={"q": "yoga mat", "size": 4}).json()
    assert len(uri["hits"]["hits"]) == 4 and uri["rerank"]["status"] == "ok"


def test_writes_and_other_apis_are_refused(client_factory: Any) -> None:
    client = client_factory()
    write = client.put("/products/_doc/p00001", json={"title": "x"})
    assert write.status_code == 403 and write.json()["error"]["type"] == "security_exception"
    assert client.get("/products/_doc/p00001").json()["_source"] == CATALOG["p00001"]
    other = client.get("/products/_stats")
    assert other.status_code == 404 and "_count" in other.json()["message"]
    later_page = client.post(
        "/products/_search",
        json={"query": {"match": {"title": "tent"}}, "sort": ["_score"], "search_after": [1.0]},
    )
    assert later_page.status_code == 400
    assert "drop-in subset" in later_page.json()["error"]["reason"]
    allowed = client_factory(engine={"allow_writes": True})
    read_only = allowed.post("/products/_doc", json={"title": "x"})
    assert read_only.status_code == 400 and "read-only" in read_only.json()["error"]["reason"]


def test_the_allowlist_applies_to_the_subset(client_factory: Any) -> None:
    strict = client_factory(engine={"allowed_indices": []})
    assert strict.get("/products/_count").status_code == 200
    for path in ("/customers/_count", "/_mapping", "/customers/_doc/1"):
        response = strict.get(path)
        assert response.status_code == 403, path
        assert response.json()["error"]["type"] == "security_exception"
    docs = strict.post("/_mget", json={"docs": [{"_index": "customers", "_id": "1"}]})
    assert docs.status_code == 403


_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=30)
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), _text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=10,
)
_segment = st.one_of(
    st.sampled_from(["products", "_count", "_doc", "_mget", "_msearch", "_search", "_all", "x"]),
    st.text(alphabet="abc_%2F.-*,", min_size=1, max_size=8),
)


@pytest.mark.slow
def test_no_drop_in_request_answers_a_500(client: Any) -> None:
    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD"]),
        segments=st.lists(_segment, min_size=0, max_size=4),
        lines=st.lists(_json, max_size=4),
        query=st.dictionaries(st.sampled_from(["q", "size", "_source", "filter_path"]), _text),
    )
    def check(method: str, segments: list[str], lines: list[Any], query: dict[str, str]) -> None:
        # Encoded by hand: a lone surrogate becomes the (invalid UTF-8) bytes a hostile client
        # can send, where httpx would refuse to encode the str at all.
        encoded = "&".join(
            f"{name}={quote(value.encode('utf-8', 'surrogatepass'), safe='')}"
            for name, value in query.items()
        )
        path = "/" + "/".join(segments) + (f"?{encoded}" if encoded else "")
        try:
            body = "\n".join(json.dumps(line) for line in lines) + "\n"
        except ValueError:
            body = "\n".join(json.dumps(line, allow_nan=True) for line in lines)
        response = client.request(
            method,
            path,
            content=body.encode("utf-8", "surrogatepass"),
            headers={"content-type": "application/json"},
        )
        assert response.status_code < 500 or response.status_code in (503, 504), (
            method,
            path,
            response.text[:300],
        )

    check()
