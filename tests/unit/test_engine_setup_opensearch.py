"""`engine-setup opensearch`, the parts without I/O: the connector body (what ML Commons will
post to the sidecar, filled the way ML Commons fills it, read back by the sidecar's own request
model), the timeouts from the sidecar's settings, the search pipeline over the field map, the
trusted-endpoint pattern, the comparison with the engine's copy of a connector, and the message
for missing plugins. The REST side runs against the real engine in
tests/integration/test_engine_native_opensearch.py."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from sidecar.api.models import V1RerankRequest
from sidecar.config import Settings
from sidecar.operations.engine_setup import opensearch_bodies as bodies

SIDECAR = "http://10.0.0.5:8080"


def plan(**settings: Any) -> bodies.Plan:
    return bodies.Plan.from_settings(Settings(**settings), SIDECAR + "/", "sidecar_rerank")


def filled(template: str, query: str, documents: list[str]) -> str:
    """The request ML Commons sends: the Cohere pre-process function's parameters put in the
    template, the query JSON-escaped inside its quotes, the documents as a JSON list."""
    return (
        template.replace("${parameters.query}", json.dumps(query)[1:-1])
        .replace("${parameters.documents}", json.dumps(documents))
        .replace("${parameters.top_n}", str(len(documents)))
    )


def test_the_connector_posts_cohere_rerank_requests_to_v1_rerank() -> None:
    body = bodies.connector_body(plan())
    (action,) = body["actions"]
    assert action["action_type"] == "predict" and action["method"] == "POST"
    assert action["url"] == "http://10.0.0.5:8080/v1/rerank"
    assert action["pre_process_function"] == "connector.pre_process.cohere.rerank"
    assert action["post_process_function"] == "connector.post_process.cohere.rerank"
    assert body["protocol"] == "http"
    assert body["client_config"]["max_retry_times"] == 0
    documents = ['Trail boot "Alder" | waterproof', "Tent \\ footprint", "防水登山靴"]
    request = json.loads(filled(action["request_body"], 'boots "mid" \\ 15"', documents))
    parsed = V1RerankRequest.model_validate(request)  # the sidecar's own reading of it
    assert parsed.query == 'boots "mid" \\ 15"'
    assert parsed.documents == documents
    # every document's score back (the processor maps them by index), within the budget
    assert parsed.top_n == len(documents)
    assert parsed.timeout_ms == 2000


@pytest.mark.parametrize(
    ("limits", "budget_ms", "read_timeout_s"),
    [
        ({}, 2000, 3),  # the /search deadline, limits.default_timeout_ms
        ({"default_timeout_ms": 5000, "engine_share": 0.5}, 5000, 6),
        ({"default_timeout_ms": 250}, 250, 2),
    ],
)
def test_the_timeouts_come_from_the_sidecars_deadline(
    limits: dict[str, Any], budget_ms: int, read_timeout_s: int
) -> None:
    made = plan(limits=limits)
    assert made.timeout_ms == budget_ms
    # whole seconds, longer than the budget: the sidecar's own answer comes first
    assert made.read_timeout_s == read_timeout_s > budget_ms / 1000
    body = bodies.connector_body(made)
    assert body["client_config"]["read_timeout"] == read_timeout_s
    assert f'"timeout_ms": {budget_ms}' in body["actions"][0]["request_body"]


def test_an_explicit_budget_wins_and_a_rerank_url_is_accepted() -> None:
    made = bodies.Plan.from_settings(Settings(), SIDECAR + "/v1/rerank", "p", timeout_ms=3000)
    assert made.endpoint == "http://10.0.0.5:8080/v1/rerank"
    assert (made.timeout_ms, made.read_timeout_s) == (3000, 4)


def test_no_secret_of_the_settings_reaches_the_connector() -> None:
    made = bodies.Plan.from_settings(
        Settings(engine={"username": "admin", "password": "s3cret-pw", "api_key": "k3y-abc"}),
        "http://svc:pa55word@10.0.0.5:8080",
        "sidecar_rerank",
    )
    text = json.dumps(bodies.connector_body(made))
    assert "s3cret-pw" not in text and "k3y-abc" not in text
    # the URL keeps its user for the call, the descriptions (shown by the engine) do not
    assert "pa55word" in made.endpoint
    assert "pa55word" not in bodies.connector_body(made)["description"]
    assert "pa55word" not in bodies.search_advice(made)
    assert bodies.redacted("http://svc:pa55word@10.0.0.5:8080/x") == "http://10.0.0.5:8080/x"


def test_the_descriptions_use_only_what_ml_commons_allows() -> None:
    description = bodies.connector_body(plan())["description"]
    assert re.fullmatch(r"[\w\s.,!?():@\-'/\"]+", description), description


def test_the_pipeline_reranks_the_field_maps_text_and_ignores_failures() -> None:
    made = plan(fields={"title": "name", "selling_points": "bullets"})
    (processor,) = bodies.pipeline_body(made, "model-1")["response_processors"]
    assert processor == {
        "rerank": {
            "ml_opensearch": {"model_id": "model-1"},
            "context": {"document_fields": ["name", "bullets"]},
            "ignore_failure": True,
        }
    }


def test_the_trusted_pattern_matches_the_sidecars_routes_only() -> None:
    pattern = bodies.trusted_regex("http://10.0.0.5:8080/")
    assert re.fullmatch(pattern, "http://10.0.0.5:8080/v1/rerank")
    for other in (
        "http://10.0.0.5:80801/v1/rerank",
        "http://10a0a0a5:8080/v1/rerank",  # the dots are literal
        "https://10.0.0.5:8080/v1/rerank",
        "http://evil/?http://10.0.0.5:8080/v1/rerank",
    ):
        assert not re.fullmatch(pattern, other), other


def engine_copy(body: dict[str, Any]) -> dict[str, Any]:
    """A connector as GET _plugins/_ml/connectors/<id> answers it: the action type in capitals,
    the client_config defaults filled in, no credential."""
    copy = json.loads(json.dumps({k: v for k, v in body.items() if k != "credential"}))
    copy["actions"][0]["action_type"] = "PREDICT"
    copy["client_config"].update(max_connection=30, retry_backoff_millis=200)
    return {**copy, "created_time": 1, "last_updated_time": 2}


def test_the_engines_copy_of_the_same_connector_is_not_a_difference() -> None:
    body = bodies.connector_body(plan())
    assert bodies.connector_differences(engine_copy(body), body) == []
    moved = bodies.connector_body(bodies.Plan("http://10.0.0.6:8080"))
    assert bodies.connector_differences(engine_copy(moved), body) == ["description", "actions"]
    slower = bodies.connector_body(plan(limits={"default_timeout_ms": 9000}))
    assert bodies.connector_differences(engine_copy(body), slower) == ["read_timeout", "actions"]


def test_missing_plugins_are_named_with_how_to_install_them() -> None:
    everything = [
        "opensearch-job-scheduler",
        "opensearch-ml",
        "opensearch-knn",
        "opensearch-neural-search",
        "analysis-icu",
    ]
    assert bodies.missing_plugins_message("http://os:9200", everything) is None
    message = bodies.missing_plugins_message("http://os:9200", ["opensearch-knn"])
    assert message is not None
    lacking = message.split("lacks the plugins ")[1].split(":")[0]
    assert lacking == "opensearch-job-scheduler, opensearch-ml, opensearch-neural-search"
    assert "bin/opensearch-plugin install" in message
    assert "python -m es_integration.engines start opensearch --plugins ml" in message


def test_the_advice_says_what_a_search_must_send() -> None:
    advice = bodies.search_advice(plan(engine={"default_index": "catalog"}))
    assert "POST /catalog/_search?search_pipeline=sidecar_rerank" in advice
    assert '"ext": {"rerank": {"query_context": {"query_text": ' in advice
