"""The sidecar searches with its own credentials, so callers may name only the indices
`engine.allowed_indices` allows (default: the default index alone), and the drop-in refuses
scripts unless `engine.allow_scripts`. Embedded engine, real app."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def strict(client_factory: Any) -> Any:
    return client_factory(engine={"allowed_indices": []})  # the shipped default


def test_default_allows_the_default_index_only(strict: Any) -> None:
    assert strict.post("/search", json={"query": "boots"}).status_code == 200
    assert strict.post("/search", json={"query": "boots", "index": "products"}).status_code == 200
    r = strict.post("/search", json={"query": "boots", "index": "customers"})
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden" and r.json()["field"] == "index"
    assert "customers" in r.json()["message"]


@pytest.mark.parametrize("path", ["/_all/_search", "/*/_search", "/customers/_search"])
def test_the_drop_in_refuses_other_indices_in_the_engines_shape(strict: Any, path: str) -> None:
    r = strict.post(path, json={"query": {"match": {"title": "boots"}}})
    assert r.status_code == 403
    assert r.json()["status"] == 403 and r.json()["error"]["type"] == "security_exception"


def test_patterns_and_index_lists(client_factory: Any) -> None:
    client = client_factory(engine={"allowed_indices": ["prod*"]})
    ok = client.post("/search", json={"query": "boots", "index": "products"})
    assert ok.status_code == 200
    both = client.post("/search", json={"query": "boots", "index": "products,secrets"})
    assert both.status_code == 403


def test_scripts_are_refused_unless_allowed(strict: Any) -> None:
    body = {
        "query": {
            "script_score": {
                "query": {"match": {"title": "boots"}},
                "script": {"source": "_score * 2"},
            }
        }
    }
    r = strict.post("/products/_search", json=body)
    assert r.status_code == 403
    assert r.json()["error"]["sidecar"]["field"] == "body.query.script_score"
