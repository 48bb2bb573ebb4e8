"""The shared Elasticsearch/OpenSearch DSL and the drop-in body parsing, without an engine."""

from __future__ import annotations

import pytest

from sidecar.api.drop_in.search_request import find_query_text
from sidecar.api.source_filter import filter_source
from sidecar.backends import dsl
from sidecar.backends.base import RangeFilter, TermFilter
from sidecar.errors import BadQuery, EngineUnavailable, NotFound, Overloaded

FIELDS = {"title": 3.0, "selling_points": 1.5}
SOURCE = ["title", "selling_points", "price"]


def test_built_query_is_a_boosted_multi_match_with_filters() -> None:
    body = dsl.build_body(
        "hiking boots",
        [
            TermFilter("brand", ("A",)),
            TermFilter("color", ("red", "blue")),
            RangeFilter("price", lte=80, gt=5),
        ],
        window=100,
        offset=0,
        search_fields=FIELDS,
        source_fields=SOURCE,
    )
    assert body["size"] == 100 and body["from"] == 0 and body["_source"] == SOURCE
    must, filters = body["query"]["bool"]["must"], body["query"]["bool"]["filter"]
    assert must == [
        {
            "multi_match": {
                "query": "hiking boots",
                "fields": ["title^3", "selling_points^1.5"],
                "type": "best_fields",
            }
        }
    ]
    assert filters == [
        {"term": {"brand": "A"}},
        {"terms": {"color": ["red", "blue"]}},
        {"range": {"price": {"gt": 5, "lte": 80}}},
    ]


def test_no_text_and_no_filters_is_match_all() -> None:
    body = dsl.build_body(None, [], 10, 20, FIELDS, SOURCE)
    assert body["query"] == {"match_all": {}} and body["from"] == 20


def test_raw_body_keeps_its_query_and_gets_the_window_and_the_fields_the_model_reads() -> None:
    raw = {"query": {"term": {"brand": "A"}}, "size": 3, "from": 7, "_source": ["brand"]}
    body = dsl.build_body("ignored", [RangeFilter("price", lte=10)], 50, 0, FIELDS, SOURCE, raw)
    assert body["size"] == 50 and body["from"] == 0
    assert body["_source"] == ["brand", *SOURCE]
    assert body["query"] == {
        "bool": {"must": [{"term": {"brand": "A"}}], "filter": [{"range": {"price": {"lte": 10}}}]}
    }
    assert raw["size"] == 3  # the caller's body is not changed


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        (True, True),
        (False, SOURCE),
        (None, SOURCE),
        ("brand", ["brand", *SOURCE]),
        ({"includes": ["brand"]}, {"includes": ["brand", *SOURCE]}),
        ({"excludes": ["selling_points"]}, True),
    ],
)
def test_source_spec_always_includes_the_mapped_fields(requested: object, expected: object) -> None:
    raw = {} if requested is None else {"_source": requested}
    assert dsl.build_body("q", [], 5, 0, FIELDS, SOURCE, raw)["_source"] == expected


def test_hits_total_and_extras_are_read() -> None:
    result = dsl.parse_response(
        {
            "took": 4,
            "timed_out": False,
            "hits": {
                "total": {"value": 10000, "relation": "gte"},
                "max_score": 2.0,
                "hits": [
                    {"_index": "p", "_id": "1", "_score": 2.0, "_source": {"title": "a"}},
                    {"_index": "p", "_id": "2", "_score": None},
                ],
            },
            "aggregations": {"a": {}},
        }
    )
    assert [h.id for h in result.hits] == ["1", "2"]
    assert result.hits[1].score == 0.0 and result.hits[1].source == {}
    assert result.total == 10000 and result.raw["total_relation"] == "gte"
    assert result.raw["aggregations"] == {"a": {}} and result.took_ms == 4


SHARD_FAILURE = {
    "error": {
        "root_cause": [
            {"type": "query_shard_exception", "reason": 'failed to create query: For input "x"'}
        ],
        "type": "search_phase_execution_exception",
        "reason": "all shards failed",
    },
    "status": 400,
}


def test_engine_errors_keep_the_specific_reason() -> None:
    error = dsl.error_for_status("opensearch", "products", 400, SHARD_FAILURE)
    assert isinstance(error, BadQuery)
    assert 'failed to create query: For input "x"' in error.message
    assert error.details["engine_error"] == "query_shard_exception"
    assert "opensearch" in error.message


@pytest.mark.parametrize(
    ("status", "kind"),
    [(404, NotFound), (429, Overloaded), (401, EngineUnavailable), (500, EngineUnavailable)],
)
def test_engine_statuses_map_to_sidecar_errors(status: int, kind: type) -> None:
    error = dsl.error_for_status("elasticsearch", "products", status, {"error": "boom"})
    assert isinstance(error, kind) and error.details["engine"] == "elasticsearch"


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ({"match": {"title": "red shoes"}}, "red shoes"),
        ({"match": {"title": {"query": "red shoes", "operator": "and"}}}, "red shoes"),
        ({"multi_match": {"query": "tent", "fields": ["title"]}}, "tent"),
        (
            {
                "bool": {
                    "must_not": [{"match": {"title": "kids"}}],
                    "filter": [{"term": {"brand": "A"}}],
                    "should": [{"match_phrase": {"title": "rain jacket"}}],
                }
            },
            "rain jacket",
        ),
        ({"function_score": {"query": {"match": {"title": "mat"}}}}, "mat"),
        ({"term": {"brand": "A"}}, None),
        ({"match": {"title": "  "}}, None),
        (None, None),
    ],
)
def test_query_text_comes_from_the_first_match_clause(query: object, text: str | None) -> None:
    assert find_query_text(query) == text


def test_source_filter_keeps_dotted_and_wildcard_paths() -> None:
    source = {"title": "t", "meta": {"a": 1, "b": 2}, "price": 3, "price_old": 4}
    assert filter_source(source, ["title", "meta.a"], []) == {"title": "t", "meta": {"a": 1}}
    assert filter_source(source, ["price*"], []) == {"price": 3, "price_old": 4}
    assert filter_source(source, [], ["meta.b", "price_old"]) == {
        "title": "t",
        "meta": {"a": 1},
        "price": 3,
    }
