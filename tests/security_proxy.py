"""A real HTTP proxy on 127.0.0.1 in front of a real engine that refuses what a key without cluster
privileges is refused: requests under `refused` prefixes (default `/_cluster`) are answered with
the engine's own security-exception body and status, everything else is forwarded to the engine
and its answer returned unchanged (status, headers, body).

It stands in for an engine with security on: the integ-test-zip distributions the tests run have
no security plugin, so no user or key can be refused anything there. The bodies are the ones a
secured engine sends an index-read-only key: Elasticsearch's `security_exception` "action
[cluster:monitor/health] is unauthorized for API key id [...]" (with its X-Elastic-Product
header), OpenSearch security's "no permissions for [cluster:monitor/health] and User [...]".
`seen` records every request as (method, path, status answered).
"""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any

import httpx

# Hop-by-hop headers, and those that describe the body as it came over the wire (httpx hands
# the body over decoded, so its length and encoding are set again here).
_DROP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "host",
    "accept-encoding",
}

_ACTIONS = {
    "/_cluster/health": "cluster:monitor/health",
    "/_cluster/state": "cluster:monitor/state",
}


def security_exception(kind: str, path: str, status: int) -> tuple[dict[str, str], bytes]:
    """(headers, body) of the engine `kind`'s refusal of `path` for a read-only key."""
    action = _ACTIONS.get(path.split("?")[0], f"indices:data/read{path}")
    if status == 401:
        reason = (
            "unable to authenticate with provided credentials and anonymous access is not "
            "allowed for this request"
            if kind == "elasticsearch"
            else "Authentication finally failed"
        )
    elif kind == "elasticsearch":
        reason = (
            f"action [{action}] is unauthorized for API key id [read-only-key] of user "
            "[catalog-reader] on indices [], this action is granted by the cluster privileges "
            "[monitor,manage,all]"
        )
    else:
        reason = (
            f"no permissions for [{action}] and User [name=catalog-reader, backend_roles=[], "
            "requestedTenant=null]"
        )
    cause = {"type": "security_exception", "reason": reason}
    body = json.dumps({"error": {"root_cause": [cause], **cause}, "status": status}).encode()
    headers = {"content-type": "application/json; charset=UTF-8"}
    if kind == "elasticsearch":
        headers = {"content-type": "application/json", "x-elastic-product": "Elasticsearch"}
    if status == 401:
        headers["www-authenticate"] = 'ApiKey, Basic realm="security" charset="UTF-8"'
    return headers, body


class SecurityProxy:
    def __init__(
        self,
        upstream: str,
        kind: str,
        refused: tuple[str, ...] = ("/_cluster",),
        status: int = 403,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.kind = kind
        self.refused = refused
        self.status = status
        self.seen: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=self.upstream, trust_env=False, timeout=30)
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the engines' clients expect

            def _handle(self) -> None:
                proxy._answer(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SecurityProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def paths(self) -> list[str]:
        with self._lock:
            return [path for _, path, _ in self.seen]

    def _answer(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        path = handler.path
        if any(path.startswith(prefix) for prefix in self.refused):
            headers, content = security_exception(self.kind, path, self.status)
            status = self.status
        else:
            upstream = self._client.request(
                handler.command,
                path,
                content=body,
                headers={k: v for k, v in handler.headers.items() if k.lower() not in _DROP},
            )
            status, content = upstream.status_code, upstream.content
            headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROP}
        with self._lock:
            self.seen.append((handler.command, path, status))
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("content-length", str(len(content)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(content)
