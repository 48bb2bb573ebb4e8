"""Elasticsearch's own reranker, served by this sidecar: an inference endpoint of task type
`rerank` using the `custom` service (Elasticsearch 8.19 / 9.1 and later; x-pack, under an
enterprise or trial license) whose requests go to the sidecar's /v1/rerank, and the
`text_similarity_reranker` retriever a search sends to use it.

The custom service fills the request template itself: `${query}` becomes the query as a JSON
string (quoted and escaped), `${input}` the documents as a JSON array of strings. Its JSONPath
response parser reads each result's `index` and `relevance_score`. `${top_n}` is left out on
purpose: the service refuses to send a template with a placeholder it has no value for, and a
retriever sends none; without it the sidecar scores and returns every document.

Idempotent: the endpoint is read first; one with the same settings is left alone, one with
other settings is deleted and created again. Elasticsearch calls the sidecar once to check an
endpoint it creates, so the sidecar must be up and reachable from the engine then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from sidecar.backends.indexing import engine_client
from sidecar.config import EngineSettings

DEFAULT_INFERENCE_ID = "sidecar-rerank"
RERANK_PATH = "/v1/rerank"
# `${query}` and `${input}` are written by the service as JSON (a string, an array of strings),
# so they stand unquoted; `return_documents: false` keeps the answer to indexes and scores.
REQUEST_TEMPLATE = '{"query": ${query}, "documents": ${input}, "return_documents": false}'
JSON_PARSER = {
    "reranked_index": "$.results[*].index",
    "relevance_score": "$.results[*].relevance_score",
}

NO_INFERENCE_API = (
    "this Elasticsearch has no inference API ({call} answered: {reason}). The `custom` "
    "inference service is an x-pack feature of Elasticsearch 8.19 / 9.1 and later: run the "
    "default distribution (not the integ-test-zip or another build without x-pack) under an "
    "enterprise or trial license (POST _license/start_trial?acknowledge=true starts a trial)"
)
LICENSE_NEEDED = (
    "Elasticsearch refused the inference endpoint for its license ({reason}): the `custom` "
    "inference service needs an enterprise or trial license (POST "
    "_license/start_trial?acknowledge=true starts a trial)"
)
NO_CUSTOM_SERVICE = (
    "this Elasticsearch has no `custom` inference service ({reason}): it came in "
    "Elasticsearch 8.19 and 9.1"
)
CREATE_HINT = (
    "; Elasticsearch calls the sidecar at {url} to check a new endpoint: is the sidecar up, "
    "its model ready, and that URL reachable from the engine?"
)


class EngineSetupError(RuntimeError):
    """The endpoint cannot be set up; the message says why and what would fix it."""


@dataclass(frozen=True)
class Outcome:
    inference_id: str
    action: str  # created | unchanged | replaced | removed | absent
    endpoint: Mapping[str, Any] | None = None  # the body it was set up with (not on removal)

    @property
    def path(self) -> str:
        """Where the endpoint lives: `PUT` creates it, `POST` runs it, `DELETE` removes it."""
        return endpoint_path(self.inference_id)


def connect(settings: EngineSettings, url: str | None = None) -> httpx.Client:
    """An HTTP client for Elasticsearch at `url` (else the first of engine.urls), with the
    engine settings' auth and TLS."""
    return engine_client(settings, url)


def rerank_url(sidecar_url: str) -> str:
    """The sidecar's /v1/rerank, from its base URL (or that URL already)."""
    url = sidecar_url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise EngineSetupError(f"--sidecar-url {sidecar_url!r} must start with http:// or https://")
    return url if url.endswith(RERANK_PATH) else url + RERANK_PATH


def endpoint_body(sidecar_url: str) -> dict[str, Any]:
    """The body of `PUT _inference/rerank/<id>`: the custom service calling /v1/rerank."""
    return {
        "service": "custom",
        "service_settings": {
            "url": rerank_url(sidecar_url),
            "headers": {"Content-Type": "application/json"},
            "request": REQUEST_TEMPLATE,
            "response": {"json_parser": dict(JSON_PARSER)},
        },
    }


def search_body(
    inference_id: str,
    field: str,
    rank_window_size: int,
    search_fields: Mapping[str, float],
    query: str = "waterproof hiking boots",
    size: int = 10,
) -> dict[str, Any]:
    """A `_search` body whose top `rank_window_size` hits are reranked by the endpoint, scored
    on `field`; the first stage is the sidecar's own multi_match over `search_fields`."""
    fields = [f"{name}^{boost:g}" for name, boost in search_fields.items()]
    first_stage = {"standard": {"query": {"multi_match": {"query": query, "fields": fields}}}}
    return {
        "size": size,
        "retriever": {
            "text_similarity_reranker": {
                "retriever": first_stage,
                "field": field,
                "inference_id": inference_id,
                "inference_text": query,
                "rank_window_size": rank_window_size,
            }
        },
    }


def set_up(client: httpx.Client, inference_id: str, sidecar_url: str) -> Outcome:
    """Create the endpoint, or leave it when it is already this one, or replace another."""
    wanted = endpoint_body(sidecar_url)
    existing = _read(client, inference_id)
    if existing is not None and _same(existing, wanted):
        return Outcome(inference_id, "unchanged", wanted)
    if existing is not None:
        _delete(client, inference_id)
    path = endpoint_path(inference_id)
    response = _call(client, "PUT", path, wanted)
    if response.status_code >= 300:
        hint = CREATE_HINT.format(url=wanted["service_settings"]["url"])
        raise _refusal("PUT", path, response, hint)
    return Outcome(inference_id, "created" if existing is None else "replaced", wanted)


def remove(client: httpx.Client, inference_id: str) -> Outcome:
    """Delete the endpoint; `absent` when there was none."""
    if _read(client, inference_id) is None:
        return Outcome(inference_id, "absent")
    _delete(client, inference_id)
    return Outcome(inference_id, "removed")


def endpoint_path(inference_id: str) -> str:
    return f"/_inference/rerank/{quote(inference_id, safe='')}"


def _read(client: httpx.Client, inference_id: str) -> Mapping[str, Any] | None:
    """The endpoint as Elasticsearch describes it, or None when there is none."""
    path = endpoint_path(inference_id)
    response = _call(client, "GET", path)
    if response.status_code == 404:
        return None
    if response.status_code >= 300:
        raise _refusal("GET", path, response)
    endpoints = response.json().get("endpoints") or []
    return endpoints[0] if endpoints else None


def _delete(client: httpx.Client, inference_id: str) -> None:
    path = endpoint_path(inference_id)
    response = _call(client, "DELETE", path)
    if response.status_code >= 300 and response.status_code != 404:
        raise _refusal("DELETE", path, response)


def _same(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether the endpoint Elasticsearch has is the one wanted: the settings this module
    writes, compared one by one (Elasticsearch adds its defaults, such as rate_limit)."""
    if existing.get("service") != wanted["service"] or existing.get("task_type") != "rerank":
        return False
    have = existing.get("service_settings") or {}
    want = wanted["service_settings"]
    parser = (have.get("response") or {}).get("json_parser")
    same_call = all(have.get(key) == want[key] for key in ("url", "headers", "request"))
    return same_call and parser == want["response"]["json_parser"]


def _call(
    client: httpx.Client, method: str, path: str, body: Mapping[str, Any] | None = None
) -> httpx.Response:
    try:
        return client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        raise EngineSetupError(f"cannot reach Elasticsearch at {client.base_url}: {exc}") from exc


def _refusal(method: str, path: str, response: httpx.Response, hint: str = "") -> EngineSetupError:
    """What Elasticsearch's refusal means, in words: no inference API (no x-pack), no license,
    no custom service, or its own reason."""
    reason = _reason(response)
    call = f"{method} {path}"
    if "no handler found for uri" in reason.lower():
        return EngineSetupError(NO_INFERENCE_API.format(call=call, reason=reason))
    if response.status_code == 403 and "licen" in reason.lower():
        return EngineSetupError(LICENSE_NEEDED.format(reason=reason))
    if "unknown service" in reason.lower() and "custom" in reason.lower():
        return EngineSetupError(NO_CUSTOM_SERVICE.format(reason=reason))
    return EngineSetupError(
        f"Elasticsearch answered {response.status_code} to {call}: {reason}{hint}"
    )


def _reason(response: httpx.Response) -> str:
    """The reason in an Elasticsearch error body (`{"error": {"reason": ...}}` or
    `{"error": "..."}`), or the body's start."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return response.text[:300] or f"HTTP {response.status_code}"
    if isinstance(error, Mapping):
        causes = error.get("root_cause") or []
        cause = causes[0] if causes and isinstance(causes[0], Mapping) else error
        return str(cause.get("reason") or error.get("reason") or error)
    return str(error) if error else response.text[:300]
