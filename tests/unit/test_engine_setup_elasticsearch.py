"""`engine-setup elasticsearch`: the `custom` inference endpoint's body as Elasticsearch documents
it (PUT _inference/rerank/<id>: service_settings url, headers, request template, response
json_parser), the retriever body, and the command's idempotency and refusals. The real engine
here has no x-pack, so creation, reading back and deletion run against an in-process stand-in of
the inference API's documented answers (tests/integration has the real engine's refusal)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from sidecar.cli import main
from sidecar.operations.engine_setup import elasticsearch as setup

SIDECAR = "http://sidecar.internal:8080"


def test_the_endpoint_body_is_the_documented_custom_rerank_service() -> None:
    body = setup.endpoint_body(SIDECAR + "/")
    assert body["service"] == "custom"
    settings = body["service_settings"]
    assert set(settings) == {"url", "headers", "request", "response"}
    assert settings["url"] == "http://sidecar.internal:8080/v1/rerank"
    assert settings["headers"] == {"Content-Type": "application/json"}
    assert settings["response"] == {
        "json_parser": {
            "reranked_index": "$.results[*].index",
            "relevance_score": "$.results[*].relevance_score",
        }
    }
    template = settings["request"]
    assert isinstance(template, str)
    # pre-defined templates, unquoted (the service writes them as JSON); none it may lack
    assert set(re.findall(r"\$\{([^}]*)\}", template)) == {"query", "input"}
    assert '"${' not in template
    filled = template.replace("${query}", json.dumps('a "b"')).replace("${input}", '["x", "y"]')
    assert json.loads(filled) == {
        "query": 'a "b"',
        "documents": ["x", "y"],
        "return_documents": False,
    }


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("http://s:8080", "http://s:8080/v1/rerank"),
        ("https://s/base/", "https://s/base/v1/rerank"),
        ("http://s:8080/v1/rerank", "http://s:8080/v1/rerank"),
    ],
)
def test_the_sidecar_url_becomes_its_v1_rerank(given: str, url: str) -> None:
    assert setup.rerank_url(given) == url


def test_a_sidecar_url_without_a_scheme_is_refused() -> None:
    with pytest.raises(setup.EngineSetupError, match="http:// or https://"):
        setup.rerank_url("sidecar:8080")


def test_the_search_body_uses_the_text_similarity_reranker() -> None:
    body = setup.search_body("my-rerank", "title", 50, {"title": 3.0, "brand.text": 2.0})
    reranker = body["retriever"]["text_similarity_reranker"]
    assert reranker["inference_id"] == "my-rerank" and reranker["field"] == "title"
    assert reranker["rank_window_size"] == 50
    first = reranker["retriever"]["standard"]["query"]["multi_match"]
    assert first["fields"] == ["title^3", "brand.text^2"]
    assert reranker["inference_text"] == first["query"]


class InferenceApi:
    """Elasticsearch's inference API as its documentation describes the answers: GET returns
    `{"endpoints": [...]}` with the service's defaults added (rate_limit), 404 for an unknown
    id; PUT creates, DELETE removes. Records every call."""

    def __init__(self) -> None:
        self.endpoints: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.method)
        inference_id = request.url.path.rsplit("/", 1)[-1]
        if request.method == "GET":
            if inference_id not in self.endpoints:
                return _error(404, "resource_not_found_exception", "Inference endpoint not found")
            return httpx.Response(200, json={"endpoints": [self.endpoints[inference_id]]})
        if request.method == "PUT":
            if inference_id in self.endpoints:
                return _error(400, "resource_already_exists_exception", "already exists")
            body = json.loads(request.content)
            settings = {**body["service_settings"], "rate_limit": {"requests_per_minute": 10000}}
            self.endpoints[inference_id] = {
                "inference_id": inference_id,
                "task_type": "rerank",
                "service": body["service"],
                "service_settings": settings,
                "task_settings": {},
            }
            return httpx.Response(200, json=self.endpoints[inference_id])
        if request.method == "DELETE":
            self.endpoints.pop(inference_id, None)
            return httpx.Response(200, json={"acknowledged": True, "pipelines": []})
        return _error(405, "method_not_allowed", request.method)


def _error(status: int, kind: str, reason: str) -> httpx.Response:
    cause = {"type": kind, "reason": reason}
    return httpx.Response(
        status, json={"error": {**cause, "root_cause": [cause]}, "status": status}
    )


def _client(handler: Any) -> httpx.Client:
    return httpx.Client(base_url="http://es:9200", transport=httpx.MockTransport(handler))


def test_set_up_is_idempotent_and_replaces_other_settings() -> None:
    api = InferenceApi()
    with _client(api) as client:
        assert setup.set_up(client, "sidecar-rerank", SIDECAR).action == "created"
        assert setup.set_up(client, "sidecar-rerank", SIDECAR).action == "unchanged"
        assert api.calls == ["GET", "PUT", "GET"]  # the second run changed nothing
        moved = setup.set_up(client, "sidecar-rerank", "http://elsewhere:9000")
        assert moved.action == "replaced" and api.calls[-2:] == ["DELETE", "PUT"]
    stored = api.endpoints["sidecar-rerank"]["service_settings"]
    assert stored["url"] == "http://elsewhere:9000/v1/rerank"


def test_remove_deletes_and_then_finds_nothing() -> None:
    api = InferenceApi()
    with _client(api) as client:
        setup.set_up(client, "sidecar-rerank", SIDECAR)
        assert setup.remove(client, "sidecar-rerank").action == "removed"
        assert setup.remove(client, "sidecar-rerank").action == "absent"
    assert api.endpoints == {}


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (
            httpx.Response(400, json={"error": "no handler found for uri [/_inference/x]"}),
            ["no inference API", "x-pack", "default distribution", "trial"],
        ),
        (
            _error(403, "security_exception", "current license is non-compliant for [inference]"),
            ["license", "enterprise or trial"],
        ),
        (
            _error(400, "status_exception", "Unknown service [custom] for model [x]"),
            ["no `custom` inference service", "8.19"],
        ),
    ],
)
def test_the_engines_refusals_are_said_in_words(answer: httpx.Response, words: list[str]) -> None:
    with _client(lambda request: answer) as client, pytest.raises(setup.EngineSetupError) as err:
        setup.set_up(client, "sidecar-rerank", SIDECAR)
    for word in words:
        assert word in str(err.value)


def test_a_refused_creation_says_the_engine_calls_the_sidecar() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return _error(404, "resource_not_found_exception", "not found")
        return _error(400, "status_exception", "Could not complete inference endpoint creation")

    with _client(handler) as client, pytest.raises(setup.EngineSetupError) as err:
        setup.set_up(client, "sidecar-rerank", SIDECAR)
    message = str(err.value)
    assert "Could not complete inference endpoint creation" in message
    assert "http://sidecar.internal:8080/v1/rerank" in message and "reachable" in message


def test_print_only_prints_the_endpoint_and_the_search_without_an_engine() -> None:
    args = ["engine-setup", "elasticsearch", "--sidecar-url", SIDECAR, "--print-only"]
    result = CliRunner().invoke(main, [*args, "--url", "http://127.0.0.1:1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["action"] == "print-only"
    assert report["endpoint"]["path"] == "/_inference/rerank/sidecar-rerank"
    assert report["endpoint"]["body"] == setup.endpoint_body(SIDECAR)
    reranker = report["search"]["body"]["retriever"]["text_similarity_reranker"]
    assert reranker["rank_window_size"] == 100  # limits.max_rerank_documents
    assert report["search"]["path"] == "/products/_search"


def test_a_window_above_what_the_sidecar_reranks_is_refused() -> None:
    args = ["engine-setup", "elasticsearch", "--sidecar-url", SIDECAR, "--print-only"]
    result = CliRunner().invoke(main, [*args, "--rank-window-size", "101"])
    assert result.exit_code == 2 and "limits.max_rerank_documents" in result.output
