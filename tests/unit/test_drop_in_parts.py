"""The drop-in's pure parts: which index and API a path names and whether it writes, the search
URL parameters, `filter_path`, the NDJSON of `_msearch`, a query_string's words."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.api.drop_in.msearch import parse_searches
from sidecar.api.drop_in.search_request import find_query_text, plain_text, sorted_by_field
from sidecar.api.drop_in.targets import body_indices, target_of
from sidecar.api.drop_in.url_params import filter_path, into_body, shape_answer
from sidecar.errors import InvalidRequest


@pytest.mark.parametrize(
    ("method", "path", "index", "api", "write"),
    [
        ("GET", "/", "", "", False),
        ("HEAD", "/products", "products", "", False),
        ("GET", "/products/_doc/p1", "products", "_doc", False),
        ("PUT", "/products/_doc/p1", "products", "_doc", True),
        ("POST", "/products/_doc", "products", "_doc", True),
        ("DELETE", "/products/_doc/p1", "products", "_doc", True),
        ("POST", "/products/_update/p1", "products", "_update", True),
        ("POST", "/products/_delete_by_query", "products", "_delete_by_query", True),
        ("POST", "/_bulk", "_all", "_bulk", True),
        ("POST", "/products/_bulk", "products", "_bulk", True),
        ("PUT", "/new-index", "new-index", "", True),
        ("DELETE", "/products", "products", "", True),
        ("POST", "/products/_refresh", "products", "_refresh", True),
        ("POST", "/products/_count", "products", "_count", False),
        ("POST", "/products/_search/template", "products", "_search/template", False),
        ("POST", "/products/_pit", "products", "_pit", False),
        ("DELETE", "/_pit", "", "_pit", False),
        ("POST", "/_search/scroll", "", "_search/scroll", False),
        ("DELETE", "/_search/scroll", "", "_search/scroll", False),
        ("GET", "/_cluster/health", "", "_cluster/health", False),
        ("GET", "/_cluster/health/products", "products", "_cluster/health", False),
        ("GET", "/_cat/indices", "_all", "_cat", False),
        ("GET", "/_mapping", "_all", "_mapping", False),
        ("POST", "/_all/_count", "_all", "_count", False),
        ("POST", "/_mget", "", "_mget", False),
        ("GET", "/my%2Cother/_count", "my,other", "_count", False),
    ],
)
def test_a_path_names_its_index_and_api(
    method: str, path: str, index: str, api: str, write: bool
) -> None:
    target = target_of(method, path)
    assert (target.index, target.api, target.write) == (index, api, write)


@pytest.mark.parametrize("path", ["/../_bulk", "/products/./_doc", "/a%2Fb/_count"])
def test_dot_segments_and_escaped_slashes_are_refused(path: str) -> None:
    with pytest.raises(InvalidRequest, match="invalid path segment"):
        target_of("GET", path)


def test_bodies_that_name_their_own_indices() -> None:
    mget = b'{"docs": [{"_index": "a", "_id": "1"}, {"_id": "2"}]}'
    assert body_indices("_mget", mget, "products") == ["a", "products"]
    ndjson = b'{"index": ["x", "y"]}\n{}\n{}\n{}\n'
    assert body_indices("_msearch/template", ndjson, "products") == ["x,y", "products"]
    with pytest.raises(InvalidRequest, match="cannot be read"):
        body_indices("_mget", b"{nope", "products")
    with pytest.raises(InvalidRequest, match="_index must be a string"):
        body_indices("_mget", b'{"docs": [{"_index": 3}]}', "products")


def test_uri_search_parameters_move_into_the_body() -> None:
    params = {
        "q": "title:boots AND brand:TrailPeak",
        "df": "title",
        "lenient": "true",
        "size": "5",
        "from": "10",
        "sort": "price:asc,_score",
        "_source_includes": "title,price",
        "track_total_hits": "100",
    }
    body = into_body(params, {"query": {"match_all": {}}, "size": 50}, "/products/_search")
    assert body["query"] == {
        "query_string": {"query": params["q"], "default_field": "title", "lenient": True}
    }
    assert body["size"] == 5 and body["from"] == 10  # the URL wins, as on the engines
    assert body["sort"] == [{"price": "asc"}, "_score"]
    assert body["_source"] == {"includes": ["title", "price"], "excludes": []}
    assert body["track_total_hits"] == 100
    assert into_body({"_source": "false"}, {}, "/x")["_source"] is False


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"colour": "red"}, "contains unrecognized parameter: [colour]"),
        ({"routing": "a"}, "without [routing]"),
        ({"typed_keys": "maybe"}, "only [true] or [false]"),
        ({"size": "ten"}, "Failed to parse int parameter [size]"),
        ({"explain": "maybe"}, "only [true] or [false]"),
        ({"sort": "price:up"}, "unknown order [up]"),
    ],
)
def test_bad_url_parameters_are_refused_naming_them(params: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("[", r"\[").replace("]", r"\]")):
        into_body(params, {}, "/products/_search")


def test_typed_keys_is_accepted_where_it_renames_nothing() -> None:
    """The Java client sends typed_keys=true on every search: without aggregations or a
    suggester it changes nothing; with them the sidecar cannot honour it and says so."""
    body = {"query": {"match": {"title": "tent"}}}
    assert into_body({"typed_keys": "true"}, body, "/products/_search") == body
    for key in ("aggs", "aggregations", "suggest"):
        with pytest.raises(InvalidRequest, match=r"without \[typed_keys\]"):
            into_body({"typed_keys": "true"}, {**body, key: {}}, "/products/_search")


ANSWER: dict[str, Any] = {
    "took": 3,
    "hits": {
        "total": {"value": 7, "relation": "eq"},
        "hits": [
            {"_id": "a", "_score": 0.9, "_source": {"title": "A", "price": 1}},
            {"_id": "b", "_score": 0.8, "_source": {"title": "B", "price": 2}},
        ],
    },
    "rerank": {"status": "ok", "timings": {"total_ms": 3.0}},
}


def test_filter_path_keeps_and_drops_as_the_engines_do() -> None:
    assert filter_path(ANSWER, "hits.hits._id") == {"hits": {"hits": [{"_id": "a"}, {"_id": "b"}]}}
    assert filter_path(ANSWER, "**.title,took") == {
        "took": 3,
        "hits": {"hits": [{"_source": {"title": "A"}}, {"_source": {"title": "B"}}]},
    }
    assert filter_path(ANSWER, "rerank.*") == {"rerank": ANSWER["rerank"]}
    dropped = filter_path(ANSWER, "-hits.hits._source,-rerank")
    assert dropped == {
        "took": 3,
        "hits": {
            "total": ANSWER["hits"]["total"],
            "hits": [{"_id": "a", "_score": 0.9}, {"_id": "b", "_score": 0.8}],
        },
    }
    assert filter_path(ANSWER, "nothing.here") == {}


def test_totals_as_integers_when_asked() -> None:
    answer = {"responses": [{"hits": {"total": {"value": 4, "relation": "eq"}, "hits": []}}]}
    shaped = shape_answer(answer, {"rest_total_hits_as_int": "true"})
    assert shaped["responses"][0]["hits"]["total"] == 4


def test_msearch_ndjson_pairs_and_its_errors() -> None:
    raw = b'{"index": "a"}\n{"query": {"match_all": {}}}\n\n{}\n'
    assert parse_searches(raw) == [({"index": "a"}, {"query": {"match_all": {}}}), ({}, {})]
    assert parse_searches(b'{}\n{"size": 1}') == [({}, {"size": 1})]  # no final newline
    for raw, message in [
        (b'{"index": "a"}\n', "a header without its search body"),
        (b'{"index": "a"}\n{nope\n', "line 2: malformed JSON"),
        (b'{"colour": 1}\n{}\n', r"key \[colour\] is not supported"),
        (b"[1]\n{}\n", "a header must be a JSON object"),
        (b"", "at least one search"),
        (b"\xff\xfe\n{}\n", "not UTF-8"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            parse_searches(raw)


def test_query_string_text_without_its_syntax() -> None:
    assert plain_text('title:boots AND brand:"Trail Peak" -socks') == "boots Trail Peak"
    assert plain_text("tent NOT title:kids !heavy") == "tent"
    assert plain_text("price:[10 TO 20] waterproof") == "10 20 waterproof"
    query = {"bool": {"must": [{"query_string": {"query": "title:(hiking boots)"}}]}}
    assert find_query_text(query) == "hiking boots"


@pytest.mark.parametrize(
    ("sort", "by_field"),
    [
        (None, False),
        ("_score", False),
        (["_score"], False),
        ([{"_score": "desc"}], False),
        ([{"_score": {"order": "desc"}}, {"_doc": "asc"}], False),  # a tiebreaker after it
        (["_score", "_doc"], False),
        ([{"_score": "asc"}], True),  # least relevant first: the caller's order
        ([{"_score": {"order": "asc"}}], True),
        (["price", "_score"], True),
        ([{"price": "asc"}], True),
        ([], False),  # no sort keys: relevance, as without `sort`
    ],
)
def test_a_body_is_reranked_only_when_relevance_comes_first(sort: Any, by_field: bool) -> None:
    body = {} if sort is None else {"sort": sort}
    assert sorted_by_field(body) is by_field
