"""A scorer that asks a vLLM server's pooling API: `POST {url}/v1/rerank` with vLLM's request
shape (`model`, `query`, `documents`, `instruction`), the model served by the launch recipe that
`rerank-sidecar vllm-args` prints (a yes/no reranker turned into a classifier, or a
cross-encoder).

What travels: text, and for the `lychee` family the images this sidecar's own guarded loader
fetched and hashed (sidecar.scoring.images), each as an `image_url` content part whose URL is a
`data:image/png;base64,...` made from the loaded image. vLLM fetches nothing, so the SSRF guard
and the content-based pair keys stay here. PNG is lossless: vLLM decodes exactly the pixels the
in-process `lychee` scorer reads (the loader already shrank them to `max_pixels`).

A window is split into calls of `call_size` documents, sent at once (at most `concurrency` in
flight for the whole scorer) and put back in order by vLLM's `index`. The request's Deadline
bounds every call: its HTTP timeout is what is left of it (at most `timeout_s`). A call cut at
the deadline is closed, and vLLM aborts a request whose client went away, so no late work piles
up on the server.

Failures are the sidecar's errors: 429 is Overloaded, anything else ScoringFailed, so `/search`
falls back with a reason and the rerank APIs answer 503/429 as for the other scorers. A circuit
breaker (sidecar.breaker) counts failed windows (unreachable, timed out, 5xx; not 4xx, a request
the server refused is no outage); once open, windows are refused at once for the cooldown, then
one probes the server, and its success closes the breaker: a vLLM that comes back is used again
without a restart.

`load` waits for the server (never raises): `/health`, then `/v1/models` (the served name, the
`root` it was loaded from, and a revision where the card has one), then a one-pair warm-up
through `/v1/rerank`. The score identity is learned there, so a calibration is checked after
load (wiring.IDENTITY_AT_BUILD). A server that answers but does not serve the configured model,
or refuses the warm-up (4xx: not a pooling model), is a `failed` state naming why.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from sidecar.breaker import CircuitBreaker, Permit
from sidecar.errors import Overloaded, ScoringFailed
from sidecar.logs import request_id
from sidecar.scoring import prompt
from sidecar.scoring.base import ModelState
from sidecar.scoring.identity import score_identity
from sidecar.scoring.vllm_recipe import template_path, template_sha256

if TYPE_CHECKING:
    from PIL.Image import Image

    from sidecar.deadline import Deadline
    from sidecar.documents import Document
    from sidecar.query import Query

log = logging.getLogger(__name__)

FAMILIES = ("lychee", "cross-encoder")
# The score template vLLM renders the prompt with (`--chat-template`, printed by
# `rerank-sidecar vllm-args`) is part of the lychee identity: its content hash.


def score_template_hash() -> str:
    """The sha256 of the shipped Lychee score template."""
    return "sha256:" + template_sha256(template_path())


BREAKER_WINDOW_S = 10.0
DATA_URLS_KEPT = 256  # PNG data: URLs of recently sent images, by image object
HEALTH_TIMEOUT_S = 5.0


class VllmScorer:
    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        family: str = "lychee",
        call_size: int = 32,
        concurrency: int = 16,
        timeout_s: float = 10.0,
        max_doc_chars: int = 512,
        max_pixels: int = 1280 * 28 * 28,
        retry_s: float = 2.0,
        breaker_failures: int = 3,
        breaker_cooldown_s: float = 5.0,
        languages: Sequence[str] | None = None,
        template_hash: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if family not in FAMILIES:
            raise ValueError(f"family {family!r} is not one of {', '.join(FAMILIES)}")
        if call_size < 1 or concurrency < 1:
            raise ValueError("call_size and concurrency must be at least 1")
        self.base = url.rstrip("/")
        self.url = self.base + "/v1/rerank"
        self.model = model
        self.family = family
        self.reads_images = family == "lychee"
        self.languages = tuple(languages or (("en", "zh") if family == "lychee" else ("en",)))
        self.call_size = call_size
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_doc_chars = max_doc_chars
        self.max_pixels = max_pixels
        self.retry_s = retry_s
        self.template_hash = template_hash or score_template_hash()
        self.transport = transport
        self.breaker = CircuitBreaker(breaker_cooldown_s, breaker_failures, BREAKER_WINDOW_S)
        self.served: dict[str, Any] = {}  # the server's model card, learned at load
        self.model_id = self._model_id(model or self.base)
        self.score_identity = self._identity()
        self.state = ModelState(device="vllm")
        self.stats: dict[str, int] = {"ok": 0, "failed": 0, "refused": 0, "overloaded": 0}
        self.last_error = ""
        self._clients: dict[int, httpx.AsyncClient] = {}
        self._limits: dict[int, asyncio.Semaphore] = {}
        self._data_urls: OrderedDict[int, tuple[Image, str]] = OrderedDict()

    # ----- identity --------------------------------------------------------------------------
    def _model_id(self, served: str) -> str:
        base = f"vllm:{self.family}:{served}"
        # the loader's resolution changes what the model sees (as for the in-process lychee)
        return f"{base}:px{self.max_pixels}" if self.reads_images else base

    def _identity(self) -> str:
        """Everything that changes this scorer's scores: the family, the served model as the
        server reports it (name, the root it was loaded from, a revision where it says one),
        the score template and the prompt version, and what the sidecar cuts or shrinks."""
        parts: dict[str, Any] = {
            "model": "vllm",
            "family": self.family,
            "served": self.served.get("id", self.model),
            "root": self.served.get("root"),
            "parent": self.served.get("parent"),
            "revision": self.served.get("revision"),
            "max_model_len": self.served.get("max_model_len"),
            "max_doc_chars": self.max_doc_chars,
        }
        if self.family == "lychee":
            parts |= {
                "template": self.template_hash,
                "prompt": prompt.PROMPT_VERSION,
                "max_pixels": self.max_pixels,
            }
        return score_identity(**parts)

    # ----- clients ---------------------------------------------------------------------------
    def _client(self) -> httpx.AsyncClient:
        # One client (and one limit) per event loop: httpx pools and asyncio primitives are
        # bound to the loop that made them.
        loop = id(asyncio.get_running_loop())
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(
                timeout=self.timeout_s,
                transport=self.transport,
                trust_env=False,
                limits=httpx.Limits(max_connections=self.concurrency * 2),
            )
            self._clients[loop] = client
        return client

    def _limit(self) -> asyncio.Semaphore:
        loop = id(asyncio.get_running_loop())
        limit = self._limits.get(loop)
        if limit is None:
            limit = self._limits[loop] = asyncio.Semaphore(self.concurrency)
        return limit

    # ----- loading ---------------------------------------------------------------------------
    async def load(self) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._probe()
            except _Misconfigured as exc:
                self.state = ModelState(status="failed", reason=str(exc), device="vllm")
                log.error("vllm scorer: %s", exc)
                return
            except ScoringFailed as exc:
                reason = f"waiting for {self.base}: {exc.message}"
                self.state = ModelState(status="loading", reason=reason, device="vllm")
                log.info("vllm server not ready (attempt %d): %s", attempt, exc.message)
                await asyncio.sleep(self.retry_s)
                continue
            except Exception as exc:  # never raises: a surprise is a state, retried
                self.state = ModelState(
                    status="loading",
                    reason=f"waiting for {self.base}: {exc.__class__.__name__}: {exc}",
                    device="vllm",
                )
                await asyncio.sleep(self.retry_s)
                continue
            self.state = ModelState(
                status="ready", progress=1.0, device="vllm", detail=self.detail()
            )
            log.info("vllm scorer ready", extra={"url": self.base, "model": self.model_id})
            return

    async def _probe(self) -> None:
        """/health, /v1/models, a one-pair warm-up; sets the served card and the identity."""
        client = self._client()
        health = await self._get(client, "/health")
        if health.status_code != 200:
            raise ScoringFailed(f"/health answered {health.status_code}")
        models = await self._get(client, "/v1/models")
        if models.status_code != 200:
            raise ScoringFailed(f"/v1/models answered {models.status_code}")
        try:
            cards = [c for c in models.json()["data"] if isinstance(c, dict) and c.get("id")]
        except (ValueError, KeyError, TypeError) as exc:
            raise _Misconfigured(f"{self.base}/v1/models is not vLLM's model list") from exc
        names = [str(c["id"]) for c in cards]
        card = next((c for c in cards if c["id"] == self.model), None) if self.model else None
        if card is None and self.model is None and cards:
            card = cards[0]
        if card is None:
            raise _Misconfigured(
                f"{self.base} serves {names or 'no model'}, not {self.model!r} (scorer.model)"
            )
        self.served = {
            "id": str(card["id"]),
            "root": card.get("root"),
            "parent": card.get("parent"),  # a LoRA adapter's base model
            "revision": card.get("revision"),  # vLLM's card has none today; kept if it says one
            "max_model_len": card.get("max_model_len"),
        }
        self.model_id = self._model_id(self.served["id"])
        self.score_identity = self._identity()
        warm_up: dict[str, Any] = {"query": "warm-up", "documents": ["warm-up"]}
        if self.family == "lychee":  # the score template refuses a request without one
            warm_up["instruction"] = "warm-up"
        try:
            await self._call(client, warm_up, 1, self.timeout_s)
        except ScoringFailed as exc:
            status = exc.details.get("status", 0)
            if status and 400 <= status < 500:
                raise _Misconfigured(f"the warm-up was refused: {exc.message}") from exc
            raise

    async def _get(self, client: httpx.AsyncClient, path: str) -> httpx.Response:
        try:
            return await client.get(self.base + path, timeout=HEALTH_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise ScoringFailed(f"{path}: {exc.__class__.__name__}: {exc}") from exc

    def detail(self) -> dict[str, Any]:
        """What /readyz shows of the server: where, what it serves, and how calls go."""
        return {
            "url": self.base,
            "family": self.family,
            "served_model": self.served.get("id"),
            "root": self.served.get("root"),
            "revision": self.served.get("revision"),
            "score_identity": self.score_identity,
            "breaker": self.breaker.state,
            "last_error": self.last_error,
        }

    # ----- scoring ---------------------------------------------------------------------------
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
        if not self.state.ready:
            raise ScoringFailed(f"vllm scorer is not ready ({self.state.status})")
        permit = self.breaker.acquire()
        if permit is None:
            self.stats["refused"] += 1
            raise ScoringFailed(
                f"vllm server {self.base} circuit open after repeated failures "
                f"({self.last_error}); retried within {self.breaker.cooldown_s:g} s"
            )
        try:
            scores = await self._score_window(query, documents, instruction, images or {}, deadline)
        except Overloaded:
            self.stats["overloaded"] += 1
            self.breaker.release(permit)  # busy is not down
            raise
        except ScoringFailed as exc:
            self._failed(permit, exc)
            raise
        except BaseException:  # cancelled by the caller: no verdict on the server
            self.breaker.release(permit)
            raise
        self.stats["ok"] += 1
        if permit.probe and self.last_error:
            log.info("vllm server %s answers again", self.base)
        self.breaker.success(permit)
        self.last_error = ""
        self._refresh_detail()
        return scores

    def _failed(self, permit: Permit, exc: ScoringFailed) -> None:
        self.stats["failed"] += 1
        status = exc.details.get("status", 0)
        if status and 400 <= status < 500:  # the server refused this request: it is up
            self.breaker.release(permit)
            return
        self.last_error = exc.message
        if self.breaker.failure(permit):
            log.warning("vllm server %s: circuit open (%s)", self.base, exc.message)
        self._refresh_detail()

    def _refresh_detail(self) -> None:
        if self.state.ready:
            self.state.detail = self.detail()

    async def _score_window(
        self,
        query: Query,
        documents: Sequence[Document],
        instruction: str,
        images: Mapping[str, Image],
        deadline: Deadline,
    ) -> list[float]:
        sent_query = await self._query_input(query, images)
        step = self.call_size
        chunks = [documents[i : i + step] for i in range(0, len(documents), step)]
        client = self._client()
        limit = self._limit()

        async def one(chunk: Sequence[Document]) -> list[float]:
            payload: dict[str, Any] = {
                "query": sent_query,
                "documents": [await self._document_input(d, images) for d in chunk],
                "top_n": len(chunk),
            }
            if self.family == "lychee":
                payload["instruction"] = instruction
            async with limit:  # waiting for a turn comes out of the same deadline
                left = min(deadline.left(), self.timeout_s)
                if left <= 0:
                    raise ScoringFailed(
                        f"vllm server {self.base}: the deadline passed before the call"
                    )
                return await self._call(client, payload, len(chunk), left)

        # each task copies the context, so every call carries the caller's request id
        tasks = [asyncio.ensure_future(one(chunk)) for chunk in chunks]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:  # one call failed (or the caller gave up): stop the others
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [score for part in parts for score in part]

    async def _call(
        self, client: httpx.AsyncClient, payload: dict[str, Any], count: int, timeout: float
    ) -> list[float]:
        """One /v1/rerank call for `count` documents, waited `timeout` seconds; its scores in
        the order the documents were sent."""
        if self.served.get("id") or self.model:
            payload = {"model": self.served.get("id") or self.model, **payload}
        rid = request_id.get()
        headers = {"x-request-id": rid} if rid else None
        started = time.perf_counter()
        try:
            response = await client.post(self.url, json=payload, headers=headers, timeout=timeout)
            left = timeout - (time.perf_counter() - started)
            if response.status_code == 503 and left > 0:
                # vLLM answers 503 to a request it marks retryable (its multimodal processor
                # cache drifted between the API server and the engine: "Multi-modal processor
                # cache miss."); it resends the images' data on the next try. Once, within time.
                log.info("vllm answered 503 (%s): retrying once", _message(response))
                response = await client.post(self.url, json=payload, headers=headers, timeout=left)
        except httpx.TimeoutException as exc:
            raise ScoringFailed(
                f"vllm server {self.base} did not answer within {timeout * 1000:.0f} ms "
                f"({count} documents)"
            ) from exc
        except httpx.HTTPError as exc:
            raise ScoringFailed(
                f"vllm server {self.base} unreachable: {exc.__class__.__name__}: {exc}"
            ) from exc
        if response.status_code == 429:
            raise Overloaded(f"vllm server {self.base} is overloaded (429)")
        if response.status_code != 200:
            raise ScoringFailed(
                f"vllm server {self.base} answered {response.status_code}: {_message(response)}",
                status=response.status_code,
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise ScoringFailed(f"vllm server {self.base} answered with non-JSON") from exc
        took_ms = (time.perf_counter() - started) * 1000
        log.debug("vllm call: %d documents in %.1f ms", count, took_ms)
        return self._scores(body, count)

    def _scores(self, body: Any, count: int) -> list[float]:
        """vLLM's results (sorted by score, each with the document's `index`) back in the order
        the documents were sent."""
        scores: list[float | None] = [None] * count
        try:
            for result in body["results"]:
                score = float(result["relevance_score"])
                if not 0.0 <= score <= 1.0:
                    raise ValueError(
                        f"relevance_score {score} is outside [0, 1] (is the classifier's "
                        "activation off?)"
                    )
                index = int(result["index"])
                if not 0 <= index < count:
                    raise IndexError(f"index {index} for {count} documents")
                scores[index] = score
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ScoringFailed(
                f"vllm server {self.base} answered a malformed result: {exc}"
            ) from exc
        missing = [i for i, s in enumerate(scores) if s is None]
        if missing:
            raise ScoringFailed(f"vllm server {self.base} left out documents {missing[:5]}")
        return [s for s in scores if s is not None]

    # ----- inputs ----------------------------------------------------------------------------
    async def _query_input(self, query: Query, images: Mapping[str, Image]) -> str | dict[str, Any]:
        if not self.reads_images:
            return query.text
        key = query.image_url or (query.image_hash if query.image_bytes is not None else None)
        image = images.get(key) if key else None
        return await self._content(query.text, image)

    async def _document_input(
        self, doc: Document, images: Mapping[str, Image]
    ) -> str | dict[str, Any]:
        text = doc.text(self.max_doc_chars)
        if not self.reads_images:
            return text
        image = images.get(doc.image_url) if doc.image_url else None
        return await self._content(text, image)

    async def _content(self, text: str, image: Image | None) -> str | dict[str, Any]:
        """A plain string without an image; with one, content parts in Lychee's order (the
        image, then the text). An image that could not be loaded is absent here: the document
        is scored on its text (the scoring service flags it and caches nothing)."""
        if image is None:
            return text
        parts: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": await self.data_url(image)}}
        ]
        if text:
            parts.append({"type": "text", "text": text})
        return {"content": parts}

    async def data_url(self, image: Image) -> str:
        """`data:image/png;base64,...` of a loaded image. The loader hands out the same image
        object while it caches it, so a query image shared by every pair, or a product seen
        again, is encoded once (the entry holds the image, so its id is not reused)."""
        key = id(image)
        kept = self._data_urls.get(key)
        if kept is not None and kept[0] is image:
            self._data_urls.move_to_end(key)
            return kept[1]
        url = await asyncio.to_thread(png_data_url, image)
        self._data_urls[key] = (image, url)
        while len(self._data_urls) > DATA_URLS_KEPT:
            self._data_urls.popitem(last=False)
        return url

    # ----- observability ---------------------------------------------------------------------
    def server_stats(self) -> dict[str, Any]:
        """Windows scored, failed, refused by the open breaker, or refused as overloaded by
        the server; and the breaker's state (read by the metrics at scrape time)."""
        return {**self.stats, "breaker": self.breaker.state}

    async def close(self) -> None:
        for client in self._clients.values():
            try:
                await client.aclose()
            except RuntimeError:  # a client of a loop that is already closed
                pass
        self._clients.clear()
        self._limits.clear()
        self._data_urls.clear()


class _Misconfigured(Exception):
    """The server answers but cannot serve this scorer: a failed state, not retried."""


def png_data_url(image: Image) -> str:
    """The image as a lossless PNG `data:` URL, in RGB as the in-process scorer reads it."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):  # vLLM's ErrorResponse: {"error": {"message", ...}}
            return str(error.get("message") or error)[:200]
        return str(body.get("message") or body.get("detail") or body)[:200]
    return str(body)[:200]
