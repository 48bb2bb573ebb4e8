"""A drop-in search body read as the /search request it means (sidecar.api.drop_in
.search_request), on plain data: no app, no engine."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from sidecar.api.drop_in.search_request import (
    drop_in_field,
    pop_rerank,
    query_context_text,
    to_search_request,
)
from sidecar.config import Settings
from sidecar.errors import InvalidRequest


def services(backend: str = "opensearch") -> Any:
    """What to_search_request reads of the services: the backend's name and the limits."""
    return SimpleNamespace(backend=SimpleNamespace(name=backend), settings=Settings())


BOOL_BODY: dict[str, Any] = {
    "query": {
        "bool": {
            "filter": [{"term": {"brand": "Trail Peak"}}],
            "must": [{"match_all": {}}, {"match": {"title": {"query": "waterproof boots"}}}],
        }
    }
}


def test_query_text_path_reads_list_items_and_an_optional_root() -> None:
    for path in ("query.bool.must[1].match.title.query", "$.query.bool.must[1].match.title.query"):
        assert query_context_text({"query_text_path": path}, BOOL_BODY) == "waterproof boots"


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ({"query_text": "a", "query_text_path": "query"}, "ext.rerank.query_context"),
        ({"query_txt": "a"}, "ext.rerank.query_context.query_txt"),
        ({"query_text": 3}, "ext.rerank.query_context.query_text"),
        ({"query_text_path": "query.bool.must[5]"}, "ext.rerank.query_context.query_text_path"),
        ({"query_text_path": "query.bool"}, "ext.rerank.query_context.query_text_path"),
        ("boots", "ext.rerank.query_context"),
    ],
)
def test_a_bad_query_context_names_the_field_the_caller_wrote(context: Any, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        query_context_text(context, BOOL_BODY)
    assert caught.value.field == field


def test_the_request_takes_the_context_text_and_leaves_other_extensions_to_the_engine() -> None:
    body = {
        **BOOL_BODY,
        "size": 5,
        "ext": {
            "rerank": {"query_context": {"query_text": "boots for snow"}, "window": 40},
            "other_plugin": {"k": 1},
        },
    }
    request, source_spec = to_search_request("products", body, services())
    assert request.query == "boots for snow"
    assert (request.window, request.size, request.index) == (40, 5, "products")
    assert request.raw_query is not None
    assert request.raw_query["ext"] == {"other_plugin": {"k": 1}}
    assert source_spec is True  # absent `_source` means all of it, as on the engine
    assert "ext" in body and "rerank" in body["ext"]  # the caller's body is left as it was


def test_query_and_query_context_together_are_refused() -> None:
    body = {"ext": {"rerank": {"query": "a", "query_context": {"query_text": "b"}}}}
    with pytest.raises(InvalidRequest) as caught:
        to_search_request("products", body, services())
    assert caught.value.field == "ext.rerank.query_context"


def test_a_point_in_time_page_is_its_own_window() -> None:
    body = {**BOOL_BODY, "pit": {"id": "abc"}, "from": 20, "size": 10}
    request, _ = to_search_request("products", body, services())
    assert request.window == 30


def test_validation_errors_name_the_drop_in_field() -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_search_request("products", {"ext": {"rerank": {"query": "a", "window": 0}}}, services())
    assert caught.value.field == "ext.rerank.window"
    renamed = drop_in_field(InvalidRequest("too long", field="timeout_ms"))
    assert renamed.field == "ext.rerank.timeout_ms"
    assert drop_in_field(InvalidRequest("x", field="size")).field == "size"


def test_the_embedded_engine_gets_the_text_not_the_body() -> None:
    body = {"query": {"match": {"title": "boots"}}}
    request, _ = to_search_request("products", body, services("embedded"))
    assert (request.query, request.raw_query) == ("boots", None)
    with pytest.raises(InvalidRequest):
        to_search_request("products", BOOL_BODY, services("embedded"))


def test_pop_rerank_refuses_unknown_keys() -> None:
    with pytest.raises(InvalidRequest) as caught:
        pop_rerank({"ext": {"rerank": {"windw": 5}}})
    assert caught.value.field == "ext.rerank.windw"
