"""A scorer that asks a reranking service over HTTP: `POST {url}/v1/rerank`, the request shape of
Jina, Cohere and vLLM, which this sidecar also serves (so one sidecar can score for another).

Documents travel as text, or as {"text", "image"} when they have an image; the peer fetches the
images itself, so this side loads none. A relative catalog path is sent as it is and resolved
under the peer's image root. A base64 query image travels as a data URI.

`load` waits for the peer: it retries a one-pair warm-up until the peer answers, and takes the
peer's model name into `model_id` (`remote:<peer model>`), so cache keys change with the peer's
model. A peer that answers 4xx to the warm-up is misconfigured: the state turns `failed`.

`score` splits a window into requests of at most `max_documents` (the peer refuses more than its
`limits.max_rerank_documents`, 100 by default), sends them at once and puts the scores back in
order. Each request carries `timeout_ms`, the peer's scoring budget: what is left of the
request's deadline, at most `timeout_s` capped at the peer's default maximum
(`limits.max_timeout_ms`, 30 s). The HTTP call waits HTTP_GRACE_S longer than that budget, so a
peer that runs out of time answers its own error instead of being cut off, and no longer.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from sidecar.errors import Overloaded, ScoringFailed
from sidecar.logs import request_id
from sidecar.scoring.base import ModelState, Scores

if TYPE_CHECKING:
    from PIL.Image import Image

    from sidecar.deadline import Deadline
    from sidecar.documents import Document
    from sidecar.query import Query

log = logging.getLogger(__name__)

PEER_MAX_TIMEOUT_MS = 30_000  # the peer's limits.max_timeout_ms by default: more is refused
HTTP_GRACE_S = 1.0  # the HTTP call waits this much past the budget it sends


class RemoteScorer:
    reads_images = True  # the peer reads them: image queries and documents are allowed
    fetches_images_remotely = True  # ...but nothing is loaded here (see wiring)

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        timeout_s: float = 10.0,
        max_doc_chars: int = 512,
        retry_s: float = 2.0,
        max_documents: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
        languages: Sequence[str] | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/v1/rerank"
        # configured, or what the peer says it reads (meta.languages) once it answers
        self._configured_languages = tuple(languages) if languages else None
        self.languages: tuple[str, ...] = self._configured_languages or ("*",)
        self.model = model
        self.model_id = f"remote:{model or url}"
        self.max_doc_chars = max_doc_chars
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        if max_documents < 1:
            raise ValueError("max_documents must be at least 1")
        self.max_documents = max_documents
        # the most sent to the peer as its budget, and the HTTP timeout just past it
        self.timeout_ms = max(1, min(round(timeout_s * 1000), PEER_MAX_TIMEOUT_MS))
        self.http_timeout_s = self.timeout_ms / 1000 + HTTP_GRACE_S
        self.transport = transport
        self.state = ModelState(device="remote")
        self._clients: dict[int, httpx.AsyncClient] = {}

    def _client(self) -> httpx.AsyncClient:
        # One client per event loop: httpx connection pools are bound to the loop that made them.
        loop = id(asyncio.get_running_loop())
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(
                timeout=self.http_timeout_s, transport=self.transport, trust_env=False
            )
            self._clients[loop] = client
        return client

    async def load(self) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                body = await self._post({"query": "warm-up", "documents": ["warm-up"]})
            except ScoringFailed as exc:
                if exc.details.get("status", 0) and 400 <= exc.details["status"] < 500:
                    self.state = ModelState(status="failed", reason=exc.message, device="remote")
                    return
                self.state = ModelState(
                    status="loading",
                    reason=f"waiting for {self.url}: {exc.message}",
                    device="remote",
                    progress=0.0,
                )
                log.info("remote scorer not ready (attempt %d): %s", attempt, exc.message)
                await asyncio.sleep(self.retry_s)
                continue
            peer = str(body.get("model") or self.model or self.url)
            self.model_id = f"remote:{peer}"
            told = (body.get("meta") or {}).get("languages")
            if self._configured_languages is None and isinstance(told, list) and told:
                self.languages = tuple(str(code) for code in told)
            self.state = ModelState(
                status="ready",
                progress=1.0,
                device="remote",
                detail={"url": self.url, "peer_model": peer},
            )
            log.info("remote scorer ready", extra={"url": self.url, "model": peer})
            return

    async def score(
        self,
        query: Query,
        documents: Sequence[Document],
        instruction: str,
        images: Mapping[str, Image] | None = None,
        *,
        deadline: Deadline,
    ) -> list[float]:
        if not documents:
            return []
        budget_ms = self.budget_ms(deadline)
        sent_query = self._query(query)
        step = self.max_documents
        chunks = [documents[i : i + step] for i in range(0, len(documents), step)]
        payloads: list[dict[str, Any]] = [
            {
                "query": sent_query,
                "documents": [self._document(d) for d in chunk],
                "top_n": len(chunk),
                "return_documents": False,
                "instruction": instruction,
                "timeout_ms": budget_ms,
            }
            for chunk in chunks
        ]
        # each task copies the context, so every request carries the caller's request id
        wait = budget_ms / 1000 + HTTP_GRACE_S
        tasks = [asyncio.ensure_future(self._post(p, wait)) for p in payloads]
        try:
            bodies = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:  # one request failed (or the caller gave up): stop the others
                task.cancel()
            raise
        scores = Scores()
        for i, (body, chunk) in enumerate(zip(bodies, chunks, strict=True)):
            scores.extend(self._scores(body, len(chunk), offset=i * step))
            scores.flags.update(_peer_flags(body, len(chunk), offset=i * step))
        return scores

    def budget_ms(self, deadline: Deadline) -> int:
        """The scoring budget sent to the peer: what is left of `deadline`, at most the
        configured `timeout_ms`, at least 1 ms (the peer refuses 0)."""
        return max(1, min(self.timeout_ms, int(deadline.left() * 1000)))

    def _query(self, query: Query) -> str | dict[str, str]:
        image = query.image_url
        if query.image_bytes is not None:
            image = (
                f"data:{_media_type(query.image_bytes)};base64,"
                + base64.b64encode(query.image_bytes).decode()
            )
        if image is None:
            return query.text
        return {"text": query.text, "image": image} if query.text else {"image": image}

    def _document(self, doc: Document) -> str | dict[str, str]:
        text = doc.text(self.max_doc_chars)
        if not doc.image_url:
            return text
        return {"text": text, "image": doc.image_url} if text else {"image": doc.image_url}

    async def _post(self, payload: dict[str, Any], wait: float | None = None) -> dict[str, Any]:
        """The peer's answer to `payload`, waited for `wait` seconds (None: http_timeout_s)."""
        if self.model:
            payload = {"model": self.model, **payload}
        timeout = self.http_timeout_s if wait is None else wait
        try:
            # the caller's request id travels on, so one search reads as one story in both logs
            rid = request_id.get()
            headers = {"x-request-id": rid} if rid else None
            response = await self._client().post(
                self.url, json=payload, headers=headers, timeout=timeout
            )
        except httpx.TimeoutException as exc:
            raise ScoringFailed(f"remote scorer {self.url} timed out ({timeout:g} s)") from exc
        except httpx.HTTPError as exc:
            raise ScoringFailed(f"remote scorer {self.url} unreachable: {exc}") from exc
        if response.status_code == 429:
            raise Overloaded(f"remote scorer {self.url} is overloaded")
        if response.status_code != 200:
            raise ScoringFailed(
                f"remote scorer {self.url} answered {response.status_code}: {_message(response)}",
                status=response.status_code,
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise ScoringFailed(f"remote scorer {self.url} answered with non-JSON") from exc
        if not isinstance(body, dict):
            raise ScoringFailed(f"remote scorer {self.url} answered with a non-object")
        return body

    def _scores(self, body: Mapping[str, Any], count: int, offset: int = 0) -> list[float]:
        """The `count` scores of one answer, in order; `offset` (the first document's place in
        the whole call) only names documents in errors."""
        scores: list[float | None] = [None] * count
        try:
            for result in body["results"]:
                score = float(result["relevance_score"])
                if not 0.0 <= score <= 1.0:
                    raise ValueError(f"relevance_score {score} is outside [0, 1]")
                scores[int(result["index"])] = score
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ScoringFailed(
                f"remote scorer {self.url} answered a malformed result: {exc}"
            ) from exc
        missing = [offset + i for i, s in enumerate(scores) if s is None]
        if missing:
            raise ScoringFailed(f"remote scorer {self.url} left out documents {missing[:5]}")
        return [s for s in scores if s is not None]

    async def close(self) -> None:
        for client in self._clients.values():
            try:
                await client.aclose()
            except RuntimeError:  # a client of a loop that is already closed
                pass
        self._clients.clear()


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:200]
    return str(body)[:200]


def _media_type(data: bytes) -> str:
    for magic, kind in (
        (b"\x89PNG", "image/png"),
        (b"\xff\xd8", "image/jpeg"),
        (b"GIF8", "image/gif"),
        (b"RIFF", "image/webp"),
    ):
        if data.startswith(magic):
            return kind
    return "application/octet-stream"


def _peer_flags(body: Mapping[str, Any], count: int, offset: int) -> dict[int, list[str]]:
    """The peer's per-document flags (`meta.flags`, keyed by the document's index in the call),
    re-keyed by the document's place in the whole window. A text-only score the peer made
    because an image failed must not be cached as if the image had been seen."""
    meta = body.get("meta")
    raw = meta.get("flags") if isinstance(meta, Mapping) else None
    if not isinstance(raw, Mapping):
        return {}
    out: dict[int, list[str]] = {}
    for key, flags in raw.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            continue
        if 0 <= index < count and isinstance(flags, list) and flags:
            out[offset + index] = [f"peer: {flag}" for flag in flags if isinstance(flag, str)]
    return out
