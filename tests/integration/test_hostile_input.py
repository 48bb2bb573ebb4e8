"""Whatever a caller sends, the answer is a clear 4xx (or a documented 503/504), never a 500.

Explicit cases first (each names the field and reason it must give), then a property-based run
(hypothesis) over every route that takes a body, with strings that include lone surrogates, NUL
and other control characters, wrong types and nesting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.rules.store import DEFAULT_RULES

ALLOWED_5XX = {503, 504}


def assert_no_500(response: Any) -> None:
    assert response.status_code < 500 or response.status_code in ALLOWED_5XX, (
        response.status_code,
        response.text[:500],
    )


def test_lone_surrogate_in_query_is_a_422_naming_the_field(client: Any) -> None:
    raw = '{"query": "boots \\ud800"}'
    r = client.post("/search", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422
    body = r.json()
    # pydantic refuses it as "not a valid unicode string"; the sidecar's own check says "surrogate"
    assert body["field"] == "query"
    assert "surrogate" in body["message"] or "unicode" in body["message"]


def test_nul_in_a_term_filter_value_is_a_422(client: Any) -> None:
    r = client.post("/search", json={"query": "boots", "filters": {"term": {"brand": "a\x00b"}}})
    assert r.status_code == 422
    assert r.json()["field"].startswith("filters") and "NUL" in r.json()["message"]


def test_surrogate_in_a_drop_in_body_is_the_engines_400(client: Any) -> None:
    raw = '{"query": {"match": {"title": "boots \\udc00"}}}'
    r = client.post("/products/_search", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["sidecar"]["field"] == "body"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"query": {"match": {"title": "\xff\xfe\xc3("}}}',  # not UTF-8
        b"[" * 10_000 + b"]" * 10_000,  # deeper than the JSON parser recurses
        b'{"size": ' + b"9" * 5000 + b"}",  # past Python's int-from-string digit limit
    ],
    ids=["not-utf8", "deep", "huge-int"],
)
def test_unreadable_drop_in_bodies_are_the_engines_400(client: Any, raw: bytes) -> None:
    # found by python -m bench.faults: each of these answered 500
    r = client.post("/products/_search", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["sidecar"]["field"] == "body"


@pytest.mark.parametrize("route", ["/search", "/api/rerank"])
def test_a_large_image_that_is_not_base64_is_a_422_naming_the_field(
    client: Any, route: str
) -> None:
    """Large images are decoded by the pipeline in a worker thread; its refusal is the same 422."""
    query = {"text": "boots", "image_base64": "%" * 300_000}
    body: dict[str, Any] = {"query": query}
    if route == "/api/rerank":
        body["documents"] = ["Waterproof hiking boots"]
    r = client.post(route, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "query.image_base64"


def test_plain_string_query_has_a_length_limit(client: Any) -> None:
    r = client.post("/search", json={"query": "a" * 5000})
    assert r.status_code == 422 and r.json()["field"] == "query"


def test_a_body_over_the_limit_is_a_413_before_parsing(client_factory: Any) -> None:
    client = client_factory(limits={"max_body_bytes": 4096})
    r = client.post("/search", json={"query": "boots", "instruction": "x" * 10_000})
    assert r.status_code == 413
    assert r.json()["error"] == "body_too_large" and r.json()["field"] == "body"
    assert "x-request-id" in r.headers  # the request middleware still saw it


def test_a_chunked_body_over_the_limit_is_a_413(client_factory: Any) -> None:
    client = client_factory(limits={"max_body_bytes": 4096})

    def chunks() -> Any:
        yield b'{"query": "boots", "instruction": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    r = client.post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_unreadable_bodies_and_unknown_routes_use_the_projects_error_shape(client: Any) -> None:
    r = client.post("/search", content=b"\xff\xfe{", headers={"content-type": "application/json"})
    assert r.status_code in (400, 422) and "detail" not in r.json() and r.json()["error"]
    missing = client.get("/no/such/route")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_a_rules_file_of_any_bytes_is_refused_and_the_watcher_lives_on(
    client_factory: Any, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(DEFAULT_RULES.read_text(encoding="utf-8"), encoding="utf-8")
    client = client_factory(rules={"path": str(rules), "watch": True, "watch_interval_s": 0.05})
    live = client.get("/readyz").json()["rules"]["version"]

    rules.write_bytes(b"version: 1\ndrop: {below: \xff\xfe}\n")
    r = client.post("/search", json={"query": "boots"})
    assert r.status_code == 200

    import time

    deadline = time.monotonic() + 10
    ready = client.get("/readyz").json()
    while ready["rules"]["last_errors"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        ready = client.get("/readyz").json()
    assert ready["rules"]["last_errors"] > 0 and ready["rules"]["watching"] is True
    assert ready["rules"]["version"] == live  # the last good rules stay live

    # a later valid file is still picked up: the watcher did not die
    rules.write_text(DEFAULT_RULES.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    while ready["rules"]["version"] == live and time.monotonic() < deadline:
        time.sleep(0.05)
        ready = client.get("/readyz").json()
    assert ready["rules"]["version"] != live and ready["rules"]["last_errors"] == 0


# -- property-based: every route, hostile values -------------------------------------------

# Characters of every category, lone surrogates (Cs) and NUL included.
_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), _text)
_json = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=12,
)
_query = st.one_of(
    _json,
    _text,
    st.fixed_dictionaries(
        {}, optional={"text": _json, "image_url": _json, "image_base64": _json, "image": _json}
    ),
)
_documents = st.lists(
    st.one_of(_text, st.fixed_dictionaries({}, optional={"text": _json, "image_url": _text})),
    max_size=4,
)

BODIES = {
    "/search": st.fixed_dictionaries(
        {"query": _query},
        optional={
            "filters": st.one_of(
                _json, st.fixed_dictionaries({}, optional={"term": _json, "range": _json})
            ),
            "from": _json,
            "size": st.one_of(st.integers(-5, 500), _json),
            "window": st.one_of(st.integers(-5, 500), _json),
            "timeout_ms": st.one_of(st.integers(-5, 40_000), _json),
            "instruction": _json,
            "index": _json,
            "rules": _json,
            "user_key": _json,
            "explain": _json,
            "raw_query": _json,
        },
    ),
    "/api/rerank": st.fixed_dictionaries(
        {"query": _query, "documents": st.one_of(_documents, _json)},
        optional={"top_n": _json, "instruction": _json, "timeout_ms": _json},
    ),
    "/v1/rerank": st.fixed_dictionaries(
        {"query": _query, "documents": st.one_of(_documents, _json)},
        optional={"model": _json, "top_n": _json, "return_documents": _json},
    ),
    "/v2/rerank": st.fixed_dictionaries(
        {"query": _query, "documents": st.one_of(st.lists(_text, max_size=4), _json)},
        optional={
            "model": _json,
            "top_n": _json,
            "max_tokens_per_doc": st.one_of(st.integers(-5, 5), _json),
            "relevant_spans": _json,
            "priority": _json,
        },
    ),
    "/rerank": st.fixed_dictionaries(
        {"query": _query, "texts": st.one_of(st.lists(_text, max_size=4), _json)},
        optional={
            "raw_scores": _json,
            "return_text": _json,
            "truncate": _json,
            "truncation_direction": st.one_of(st.sampled_from(["left", "Right"]), _json),
        },
    ),
    "/api/explain": st.fixed_dictionaries(
        {
            "query": _query,
            "product": st.one_of(
                _json,
                st.fixed_dictionaries(
                    {}, optional={"title": _text, "selling_points": _json, "image_url": _json}
                ),
            ),
        },
        optional={"timeout_ms": _json},
    ),
    "/products/_search": st.one_of(
        _json,
        st.fixed_dictionaries(
            {},
            optional={
                "query": st.one_of(
                    _json, st.fixed_dictionaries({"match": st.dictionaries(_text, _json)})
                ),
                "ext": _json,
                "size": _json,
                "from": _json,
                "sort": _json,
                "_source": _json,
            },
        ),
    ),
}


def _send(client: Any, route: str, body: Any) -> Any:
    try:
        raw = json.dumps(body)  # escapes lone surrogates as \\udXXX, as a real client would
    except ValueError:  # NaN and friends: send them anyway, as a sloppy client might
        raw = json.dumps(body, allow_nan=True)
    return client.post(route, content=raw, headers={"content-type": "application/json"})


@pytest.mark.slow
@pytest.mark.parametrize("route", sorted(BODIES))
def test_no_route_answers_a_500_whatever_the_body(client: Any, route: str) -> None:
    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(body=BODIES[route])
    def check(body: Any) -> None:
        assert_no_500(_send(client, route, body))

    check()
