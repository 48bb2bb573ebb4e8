"""Runs an official engine client, as its users call it, and prints what every call answered.

Started by tests/integration/official_clients.py in a subprocess whose PYTHONPATH puts one
client version first (only one version of a package fits in the venv):

    python client_driver.py elasticsearch|opensearch URL  < plan.json  > answers.json

The plan is a JSON list of calls ({"op": "info" | "search" | "msearch" | "count" | "get" |
"mget", ...arguments}); the answer has the client's version and, per call, either
{"ok": true, "body": the raw body} or {"ok": false, "error": the exception's class, "status",
"body"}. Nothing here asserts: the test does, with what the calls returned.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def elasticsearch_calls(url: str) -> tuple[str, Any, Any]:
    import elasticsearch
    from elasticsearch import ApiError, Elasticsearch, TransportError

    client = Elasticsearch(url, request_timeout=60)

    def call(step: dict[str, Any]) -> Any:
        op = step["op"]
        if op == "info":
            return client.info().body
        if op == "search":
            body = dict(step["body"])
            if "from" in body:
                body["from_"] = body.pop("from")
            return client.search(index=step.get("index"), **body).body
        if op == "msearch":
            return client.msearch(index=step.get("index"), searches=step["searches"]).body
        if op == "count":
            return client.count(index=step["index"], **step.get("body", {})).body
        if op == "get":
            return client.get(index=step["index"], id=step["id"]).body
        if op == "mget":
            return client.mget(index=step.get("index"), **step["body"]).body
        raise ValueError(f"unknown op {op}")

    def failure(exc: Exception) -> dict[str, Any] | None:
        if isinstance(exc, ApiError):
            return {"status": exc.meta.status, "body": exc.body}
        if isinstance(exc, TransportError):
            return {"status": None, "body": str(exc)}
        return None

    return elasticsearch.__versionstr__, call, failure


def opensearch_calls(url: str) -> tuple[str, Any, Any]:
    import opensearchpy
    from opensearchpy import OpenSearch, TransportError

    client = OpenSearch(hosts=[url], timeout=60)

    def call(step: dict[str, Any]) -> Any:
        op = step["op"]
        if op == "info":
            return client.info()
        if op == "search":
            return client.search(index=step.get("index"), body=step["body"])
        if op == "msearch":
            return client.msearch(index=step.get("index"), body=step["searches"])
        if op == "count":
            return client.count(index=step["index"], body=step.get("body") or None)
        if op == "get":
            return client.get(index=step["index"], id=step["id"])
        if op == "mget":
            return client.mget(index=step.get("index"), body=step["body"])
        raise ValueError(f"unknown op {op}")

    def failure(exc: Exception) -> dict[str, Any] | None:
        if isinstance(exc, TransportError):
            status = exc.status_code if isinstance(exc.status_code, int) else None
            return {"status": status, "body": exc.info}
        return None

    return opensearchpy.__versionstr__, call, failure


def main() -> None:
    kind, url = sys.argv[1], sys.argv[2]
    plan = json.load(sys.stdin)
    version, call, failure = (elasticsearch_calls if kind == "elasticsearch" else opensearch_calls)(
        url
    )
    answers = []
    for step in plan:
        try:
            answers.append({"ok": True, "body": call(step)})
        except Exception as exc:
            known = failure(exc)
            if known is None:
                known = {"status": None, "body": str(exc)}
            answers.append({"ok": False, "error": type(exc).__name__, **known})
    json.dump({"version": version, "answers": answers}, sys.stdout, default=str)


if __name__ == "__main__":
    main()
