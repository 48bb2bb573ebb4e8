"""What `rerank-sidecar engine-setup opensearch` sends, built without I/O: the ML Commons HTTP
connector whose `predict` action posts to the sidecar's `/v1/rerank` (Cohere's request and
answer, read by ML Commons' built-in `connector.{pre,post}_process.cohere.rerank` functions), the
search pipeline with the `rerank` response processor (`ml_opensearch`), the trusted-endpoint
pattern, and the messages.

What the processor does (neural-search 3.6), which the printed advice repeats: it reranks only
the hits of the page (`size`), replaces their `_score` with the model's score and sorts by it;
each document's text is its `document_fields` concatenated with no separator, a list of strings
written as Java writes a list ("Trail Boot[Waterproof, Vibram sole]": a little different from
the sidecar's own "Trail Boot | Waterproof | Vibram sole", so a product's score differs a little
between the two paths); the query text comes from `ext.rerank.query_context.query_text`; and the
Cohere post-process function wants every document's score back, by `index`, as a double (ML
Commons reads a number written with more than 18 characters as a BigDecimal and the cast fails).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from es_integration.engines.plugins import PLUGIN_SETS
from sidecar.config import Settings

PRIVATE_IP = "plugins.ml_commons.connector.private_ip_enabled"
TRUSTED_ENDPOINTS = "plugins.ml_commons.trusted_connector_endpoints_regex"
# What the path needs, in install order: ML Commons (on job-scheduler) runs the connector,
# neural-search (on knn) holds the rerank processor.
REQUIRED_PLUGINS = tuple(plugin.name for plugin in PLUGIN_SETS["ml"])
PRE_PROCESS = "connector.pre_process.cohere.rerank"
POST_PROCESS = "connector.post_process.cohere.rerank"
_REGEX_SPECIALS = set("\\.^$|?*+()[]{}")


@dataclass(frozen=True)
class Plan:
    """What `set_up` makes: a connector to `sidecar_url`, a model, a pipeline named `pipeline`."""

    sidecar_url: str
    pipeline: str = "sidecar_rerank"
    index: str = "products"
    document_fields: tuple[str, ...] = ("title", "selling_points")
    timeout_ms: int = 2000  # the sidecar's scoring budget per call
    max_documents: int = 100  # the sidecar's limits.max_rerank_documents

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        sidecar_url: str,
        pipeline: str,
        index: str | None = None,
        timeout_ms: int | None = None,
    ) -> Plan:
        """The plan for a sidecar running with `settings`: its field map's text fields, and as
        the scoring budget its /search deadline (limits.default_timeout_ms). On /search the
        model gets what the engine left of that deadline; here the engine has answered before
        the processor calls, so the model gets it whole (a search may then take the engine's
        time more than on /search)."""
        limits = settings.limits
        budget = timeout_ms or limits.default_timeout_ms
        return cls(
            sidecar_url=sidecar_url.rstrip("/").removesuffix("/v1/rerank"),
            pipeline=pipeline,
            index=index or settings.engine.default_index,
            document_fields=(settings.fields.title, settings.fields.selling_points),
            timeout_ms=budget,
            max_documents=limits.max_rerank_documents,
        )

    @property
    def endpoint(self) -> str:
        return f"{self.sidecar_url}/v1/rerank"

    @property
    def read_timeout_s(self) -> int:
        """The connector's read timeout (whole seconds): the budget and a second more, so the
        sidecar's own answer (a 503 naming the deadline) comes before the connector gives up."""
        return math.ceil(self.timeout_ms / 1000) + 1


def connector_body(plan: Plan) -> dict[str, Any]:
    """The ML Commons HTTP connector: `predict` posts Cohere's rerank request to /v1/rerank.
    The pre-process function fills query, documents and top_n (all of them: the processor needs
    every document's score); `timeout_ms` is the sidecar's own deadline for the call."""
    request_body = (
        '{"query": "${parameters.query}", "documents": ${parameters.documents}, '
        f'"top_n": ${{parameters.top_n}}, "timeout_ms": {plan.timeout_ms}}}'
    )
    return {
        "name": plan.pipeline,
        # ML Commons allows letters, digits, spaces and .,!?():@-_'/" in a description
        "description": f"rerank-sidecar at {redacted(plan.sidecar_url)}: the reranker of the "
        f"search pipeline {plan.pipeline} (made by rerank-sidecar engine-setup opensearch)",
        "version": "1",
        "protocol": "http",
        # ML Commons refuses an HTTP connector without a credential; /v1/rerank takes no key,
        # so this one holds nothing secret and is sent nowhere.
        "credential": {"sidecar_key": "none"},
        "parameters": {},
        "client_config": {
            "connection_timeout": 1,  # seconds, the smallest it takes
            "read_timeout": plan.read_timeout_s,
            "max_retry_times": 0,  # a retry would outlive the search's deadline
        },
        "actions": [
            {
                "action_type": "predict",
                "method": "POST",
                "url": plan.endpoint,
                "headers": {"content-type": "application/json"},
                "request_body": request_body,
                "pre_process_function": PRE_PROCESS,
                "post_process_function": POST_PROCESS,
            }
        ],
    }


def pipeline_body(plan: Plan, model_id: str) -> dict[str, Any]:
    """The search pipeline: the `rerank` response processor over the field map's text fields;
    on any failure of the model call the search answers in the engine's order."""
    return {
        "description": f"rerank the page with rerank-sidecar at {redacted(plan.sidecar_url)}",
        "response_processors": [
            {
                "rerank": {
                    "ml_opensearch": {"model_id": model_id},
                    "context": {"document_fields": list(plan.document_fields)},
                    "ignore_failure": True,
                }
            }
        ],
    }


def trusted_regex(sidecar_url: str) -> str:
    """The trusted-endpoint pattern (Java regex, whole-URL match) for the sidecar's routes."""
    escaped = "".join(f"\\{c}" if c in _REGEX_SPECIALS else c for c in sidecar_url.rstrip("/"))
    return f"^{escaped}/.*$"


def missing_plugins_message(url: str, installed: Iterable[str]) -> str | None:
    """None when the node has every plugin the path needs; else which lack and how to add them."""
    have = set(installed)
    missing = [name for name in REQUIRED_PLUGINS if name not in have]
    if not missing:
        return None
    return (
        f"OpenSearch at {redacted(url)} lacks the plugins {', '.join(missing)}: ML Commons "
        "(opensearch-ml, on opensearch-job-scheduler) calls the sidecar and neural-search (on "
        "opensearch-knn) holds the rerank processor. Install them on every node, in the order "
        f"{', '.join(REQUIRED_PLUGINS)} (`bin/opensearch-plugin install --batch <name>` on a "
        "full distribution, then restart the nodes); for the local development node: "
        "`python -m es_integration.engines start opensearch --plugins ml` (a fresh --state-dir "
        "or after `stop opensearch`)."
    )


def search_advice(plan: Plan) -> str:
    """What a search must send to be reranked, and what it then gets."""
    return (
        f"search with the sidecar's reranker:\n"
        f"  POST /{plan.index}/_search?search_pipeline={plan.pipeline}\n"
        '  {"query": {...}, "size": 10,\n'
        '   "ext": {"rerank": {"query_context": {"query_text": "<the shopper\'s query>"}}}}\n'
        f"the page (size <= {plan.max_documents}, the sidecar's limits.max_rerank_documents) is "
        "reranked: `_score` becomes the model's score; no business rules. When the sidecar "
        f"fails or takes over {plan.timeout_ms} ms the page keeps the engine's order."
    )


def redacted(url: str) -> str:
    """The URL without user and password, for printing."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def connector_differences(current: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The fields of `wanted` that the engine's copy of the connector does not have (ML
    Commons writes the action type in capitals and fills in the client_config defaults)."""
    differs = [k for k in ("description", "version", "protocol") if current.get(k) != wanted[k]]
    config = current.get("client_config") or {}
    differs += [k for k, v in wanted["client_config"].items() if config.get(k) != v]
    actions = [
        {**a, "action_type": str(a.get("action_type", "")).lower()}
        for a in current.get("actions") or []
    ]
    if actions != wanted["actions"]:
        differs.append("actions")
    return differs
