"""OpenSearch calls this sidecar as its own reranker, through ML Commons: the cluster settings, an
HTTP connector to the sidecar's `/v1/rerank`, a model group and a remote model on the connector
(registered, deployed), and a search pipeline whose `rerank` processor calls the model. The
bodies are built in opensearch_bodies.py; this module talks to the engine's REST API.

`set_up` is idempotent: every object is named after the pipeline and found by that name; one that
matches is reused, one that differs is updated in place (a connector only while its model is
undeployed, so the model is undeployed, the connector updated, the model deployed again), none
is created twice. `remove` takes them down; the cluster settings stay (other connectors may need
them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from sidecar.operations.engine_setup.opensearch_bodies import (
    PRIVATE_IP,
    TRUSTED_ENDPOINTS,
    Plan,
    connector_body,
    connector_differences,
    missing_plugins_message,
    pipeline_body,
    redacted,
    search_advice,
    trusted_regex,
)

__all__ = ["Outcome", "Plan", "SetupError", "redacted", "remove", "search_advice", "set_up"]

WAIT_S = 60.0  # for a register / deploy task; a remote model's take a second or two
_DEPLOYED_STATES = ("DEPLOYED", "PARTIALLY_DEPLOYED", "DEPLOYING")


class SetupError(RuntimeError):
    """The setup cannot go on; the message says what failed and, where known, what to do."""


@dataclass
class Outcome:
    """What a run did, one line per object, and the ids it left."""

    steps: list[str] = field(default_factory=list)
    connector_id: str | None = None
    model_id: str | None = None


# ------------------------------------------------------------------ the engine's REST API


class _Rest:
    """The engine's REST calls; a failure becomes a SetupError naming what was being done."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def call(
        self,
        method: str,
        path: str,
        what: str,
        body: Any = None,
        allow: tuple[int, ...] = (),
    ) -> tuple[int, Any]:
        try:
            response = self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            where = redacted(str(self.client.base_url))
            raise SetupError(f"{what}: cannot reach OpenSearch at {where}: {exc}") from exc
        try:
            payload = response.json() if response.content else None
        except ValueError:
            payload = response.text[:300]
        if response.status_code < 300 or response.status_code in allow:
            return response.status_code, payload
        raise SetupError(f"{what} failed ({response.status_code}): {_reason(payload)}")

    def find(self, kind: str, name: str) -> list[dict[str, Any]]:
        """The ML objects of `kind` (connectors, models, model_groups) with this exact name,
        oldest first. A search before the first object of a kind exists answers 404."""
        query = {
            "query": {"term": {"name.keyword": name}},
            "size": 100,
            "sort": [{"created_time": {"order": "asc", "unmapped_type": "date"}}],
        }
        status, body = self.call(
            "POST", f"/_plugins/_ml/{kind}/_search", f"find {kind} {name!r}", query, allow=(404,)
        )
        if status == 404:
            return []
        hits = (body or {}).get("hits", {}).get("hits", [])
        return [{"id": h["_id"], **h.get("_source", {})} for h in hits]


def _reason(payload: Any) -> str:
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            causes = error.get("root_cause") or [error]
            cause = causes[0] if isinstance(causes[0], dict) else error
            return f"{cause.get('type', '')}: {cause.get('reason', '')}".strip(": ")
        return str(error)[:300]
    return str(payload)[:300]


# ------------------------------------------------------------------ set up and remove


def check_plugins(rest: _Rest) -> list[str]:
    """The node's plugins; SetupError naming the missing ones and how to install them."""
    _, rows = rest.call("GET", "/_cat/plugins?format=json", "list the plugins")
    names = sorted({row.get("component", "") for row in rows or []})
    message = missing_plugins_message(str(rest.client.base_url), names)
    if message:
        raise SetupError(message)
    return names


def set_up(client: httpx.Client, plan: Plan, wait_s: float = WAIT_S) -> Outcome:
    """Make (or bring up to date) the cluster settings, connector, model group, deployed model
    and search pipeline of `plan`."""
    rest = _Rest(client)
    check_plugins(rest)
    outcome = Outcome()
    outcome.steps.append(_index_fields(rest, plan))
    outcome.steps.append(_cluster_settings(rest, plan))
    connector_id, changed = _connector(rest, plan, outcome)
    group_id = _model_group(rest, plan, outcome)
    outcome.model_id = _model(rest, plan, connector_id, group_id, changed, outcome, wait_s)
    outcome.connector_id = connector_id
    outcome.steps.append(_pipeline(rest, plan, outcome.model_id))
    return outcome


def _index_fields(rest: _Rest, plan: Plan) -> str:
    """Whether the index maps the fields the processor reads (a note, not a refusal: the
    pipeline serves any index, and a missing field reads as an empty string)."""
    fields = ", ".join(plan.document_fields)
    path = f"/{quote(plan.index, safe='')}/_mapping"
    status, body = rest.call("GET", path, f"read the mapping of {plan.index!r}", allow=(404,))
    if status == 404:
        return f"index {plan.index}: not found (the pipeline reads {fields} of any index)"
    mapped: set[str] = set()
    for index in (body or {}).values():
        mapped.update(index.get("mappings", {}).get("properties", {}))
    lacking = [name for name in plan.document_fields if name.split(".")[0] not in mapped]
    if lacking:
        return f"index {plan.index}: maps no {', '.join(lacking)} (read as empty text)"
    return f"index {plan.index}: maps {fields}"


def _cluster_settings(rest: _Rest, plan: Plan) -> str:
    """Private addresses allowed (a sidecar beside the engine has one; read when the model's
    HTTP client is made, so before the deploy) and the sidecar's URL among the trusted ones
    (added to the patterns already there)."""
    _, current = rest.call(
        "GET", "/_cluster/settings?include_defaults=true&flat_settings=true", "read settings"
    )
    effective: dict[str, Any] = {}
    for scope in ("defaults", "persistent", "transient"):  # later scopes win
        effective.update((current or {}).get(scope, {}))
    patterns = list(effective.get(TRUSTED_ENDPOINTS) or [])
    wanted = trusted_regex(plan.sidecar_url)
    update: dict[str, Any] = {}
    if str(effective.get(PRIVATE_IP, "false")).lower() != "true":
        update[PRIVATE_IP] = True
    if wanted not in patterns:
        update[TRUSTED_ENDPOINTS] = [*patterns, wanted]
    if not update:
        return "cluster settings: unchanged (private addresses allowed, the sidecar trusted)"
    rest.call("PUT", "/_cluster/settings", "update cluster settings", {"persistent": update})
    return f"cluster settings: set {', '.join(sorted(update))}"


def _connector(rest: _Rest, plan: Plan, outcome: Outcome) -> tuple[str, bool]:
    """(connector id, whether it was changed) after creating, reusing or updating it."""
    wanted = connector_body(plan)
    found = rest.find("connectors", plan.pipeline)
    where = f"-> {redacted(plan.endpoint)}, timeout_ms {plan.timeout_ms}"
    if not found:
        _, body = rest.call("POST", "/_plugins/_ml/connectors/_create", "create connector", wanted)
        connector_id = str(body["connector_id"])
        outcome.steps.append(f"connector {plan.pipeline} ({connector_id}): created {where}")
        return connector_id, True
    first, *extra = found
    connector_id = str(first["id"])
    for duplicate in extra:  # left by an interrupted run: one connector per pipeline
        _delete_connector(rest, str(duplicate["id"]), outcome)
    _, current = rest.call(
        "GET", f"/_plugins/_ml/connectors/{connector_id}", "read connector", allow=(404,)
    )
    differs = connector_differences(current or {}, wanted)
    if not differs:
        outcome.steps.append(f"connector {plan.pipeline} ({connector_id}): unchanged {where}")
        return connector_id, False
    # ML Commons refuses to update a connector that a deployed model uses.
    for model in rest.find("models", plan.pipeline):
        _undeploy(rest, str(model["id"]), outcome)
    update = {k: v for k, v in wanted.items() if k != "name"}
    rest.call("PUT", f"/_plugins/_ml/connectors/{connector_id}", "update connector", update)
    outcome.steps.append(
        f"connector {plan.pipeline} ({connector_id}): updated {', '.join(differs)} {where}"
    )
    return connector_id, True


def _model_group(rest: _Rest, plan: Plan, outcome: Outcome) -> str:
    found = rest.find("model_groups", plan.pipeline)
    if found:
        group_id = str(found[0]["id"])
        outcome.steps.append(f"model group {plan.pipeline} ({group_id}): unchanged")
        return group_id
    body = {"name": plan.pipeline, "description": "rerank-sidecar's remote rerank model"}
    _, answer = rest.call(
        "POST", "/_plugins/_ml/model_groups/_register", "register model group", body
    )
    group_id = str(answer["model_group_id"])
    outcome.steps.append(f"model group {plan.pipeline} ({group_id}): created")
    return group_id


def _model(
    rest: _Rest,
    plan: Plan,
    connector_id: str,
    group_id: str,
    connector_changed: bool,
    outcome: Outcome,
    wait_s: float,
) -> str:
    """The remote model on the connector, registered once and deployed."""
    found = rest.find("models", plan.pipeline)
    for duplicate in found[1:]:
        _delete_model(rest, str(duplicate["id"]), outcome)
    done = "registered"
    if found:
        model_id = str(found[0]["id"])
        done = "unchanged"
        if found[0].get("connector_id") != connector_id:
            _undeploy(rest, model_id, outcome)
            rest.call(
                "PUT",
                f"/_plugins/_ml/models/{model_id}",
                "point the model at the connector",
                {"connector_id": connector_id},
            )
            done = "moved to the connector"
    else:
        body = {
            "name": plan.pipeline,
            "function_name": "remote",
            "model_group_id": group_id,
            "connector_id": connector_id,
            "description": f"rerank-sidecar at {redacted(plan.sidecar_url)}",
        }
        _, answer = rest.call("POST", "/_plugins/_ml/models/_register", "register model", body)
        registered = answer.get("model_id") or _wait_task(
            rest, str(answer["task_id"]), "register model", wait_s
        ).get("model_id")
        model_id = str(registered)
    if connector_changed and done == "unchanged":
        done = "deployed again on the updated connector"
        _deploy(rest, model_id, wait_s)
    elif _model_state(rest, model_id) != "DEPLOYED":
        _deploy(rest, model_id, wait_s)
        done = "deployed" if done == "unchanged" else f"{done}, deployed"
    outcome.steps.append(f"model {plan.pipeline} ({model_id}): {done}")
    return model_id


def _pipeline(rest: _Rest, plan: Plan, model_id: str) -> str:
    wanted = pipeline_body(plan, model_id)
    path = f"/_search/pipeline/{quote(plan.pipeline, safe='')}"
    status, current = rest.call("GET", path, "read search pipeline", allow=(404,))
    fields = ", ".join(plan.document_fields)
    if status == 200 and (current or {}).get(plan.pipeline) == wanted:
        return f"search pipeline {plan.pipeline}: unchanged (rerank over {fields})"
    rest.call("PUT", path, "put search pipeline", wanted)
    done = "updated" if status == 200 else "created"
    return f"search pipeline {plan.pipeline}: {done} (rerank over {fields}, ignore_failure)"


def remove(client: httpx.Client, pipeline: str) -> Outcome:
    """Delete the pipeline, undeploy and delete the model(s), the model group and the
    connector(s) named `pipeline`. What is already gone is said so, not an error."""
    rest = _Rest(client)
    outcome = Outcome()
    # Asked first: a cluster without any pipeline acknowledges the DELETE of a missing one.
    path = f"/_search/pipeline/{quote(pipeline, safe='')}"
    status, _ = rest.call("GET", path, "read search pipeline", allow=(404,))
    if status == 200:
        rest.call("DELETE", path, "delete search pipeline", allow=(404,))
    outcome.steps.append(f"search pipeline {pipeline}: {'deleted' if status == 200 else 'absent'}")
    _, rows = rest.call("GET", "/_cat/plugins?format=json", "list the plugins")
    if "opensearch-ml" not in {row.get("component") for row in rows or []}:
        outcome.steps.append("no ML Commons on this cluster: no connector or model to remove")
        return outcome
    for kind, delete in (
        ("models", _delete_model),
        ("model_groups", _delete_group),
        ("connectors", _delete_connector),
    ):
        found = rest.find(kind, pipeline)
        if not found:
            outcome.steps.append(f"{kind.replace('_', ' ')[:-1]} {pipeline}: absent")
        for item in found:
            delete(rest, str(item["id"]), outcome)
    outcome.steps.append("cluster settings: left as they are (other connectors may need them)")
    return outcome


def _delete_model(rest: _Rest, model_id: str, outcome: Outcome) -> None:
    _undeploy(rest, model_id, outcome)
    rest.call("DELETE", f"/_plugins/_ml/models/{model_id}", "delete model", allow=(404,))
    outcome.steps.append(f"model {model_id}: deleted")


def _delete_group(rest: _Rest, group_id: str, outcome: Outcome) -> None:
    path = f"/_plugins/_ml/model_groups/{group_id}"
    rest.call("DELETE", path, "delete model group", allow=(404,))
    outcome.steps.append(f"model group {group_id}: deleted")


def _delete_connector(rest: _Rest, connector_id: str, outcome: Outcome) -> None:
    path = f"/_plugins/_ml/connectors/{connector_id}"
    rest.call("DELETE", path, "delete connector", allow=(404,))
    outcome.steps.append(f"connector {connector_id}: deleted")


def _model_state(rest: _Rest, model_id: str) -> str:
    _, model = rest.call("GET", f"/_plugins/_ml/models/{model_id}", "read model")
    return str((model or {}).get("model_state", ""))


def _deploy(rest: _Rest, model_id: str, wait_s: float) -> None:
    _, answer = rest.call("POST", f"/_plugins/_ml/models/{model_id}/_deploy", "deploy model")
    if answer.get("status") != "COMPLETED":
        _wait_task(rest, str(answer["task_id"]), "deploy model", wait_s)
    # The task may be done a moment before the model says DEPLOYED.
    deadline = time.monotonic() + wait_s
    while (state := _model_state(rest, model_id)) != "DEPLOYED":
        if state not in ("DEPLOYING", "REGISTERED") or time.monotonic() > deadline:
            raise SetupError(f"deploy model {model_id}: its state is {state or 'unknown'}")
        time.sleep(0.5)


def _undeploy(rest: _Rest, model_id: str, outcome: Outcome, wait_s: float = WAIT_S) -> None:
    """Undeploy and wait for it: a deployed model can be neither deleted nor moved."""
    if _model_state(rest, model_id) not in _DEPLOYED_STATES:
        return
    rest.call("POST", f"/_plugins/_ml/models/{model_id}/_undeploy", "undeploy model")
    deadline = time.monotonic() + wait_s
    while (state := _model_state(rest, model_id)) in _DEPLOYED_STATES:
        if time.monotonic() > deadline:
            raise SetupError(f"undeploy model {model_id}: still {state} after {wait_s:.0f} s")
        time.sleep(0.5)
    outcome.steps.append(f"model {model_id}: undeployed")


def _wait_task(rest: _Rest, task_id: str, what: str, wait_s: float) -> dict[str, Any]:
    """The ML task once COMPLETED; SetupError when it fails or is still running after
    `wait_s` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        _, task = rest.call("GET", f"/_plugins/_ml/tasks/{task_id}", f"{what}: read task")
        state = (task or {}).get("state")
        if state == "COMPLETED":
            return dict(task)
        if state in ("FAILED", "CANCELLED", "COMPLETED_WITH_ERROR"):
            raise SetupError(f"{what}: task {task_id} {state}: {task.get('error', '')}")
        if time.monotonic() > deadline:
            raise SetupError(
                f"{what}: task {task_id} still {state} after {wait_s:.0f} s "
                f"(GET /_plugins/_ml/tasks/{task_id} says how it goes on)"
            )
        time.sleep(0.5)
