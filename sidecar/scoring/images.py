"""Product and query images for scorers that read them: fetched safely, decoded, cached.

A reference is an http(s) URL, a path relative to the configured local root (the demo catalog's
`images/p00001.png`), or raw bytes (a base64 query image; keyed by the query's image hash). Every
failure is a reason, never an exception: the pipeline scores that document on its text and flags
it. What is refused:

- addresses that are loopback, private, link-local (cloud metadata), multicast, reserved or
  unspecified, unless the host is allowlisted (the SSRF guard; checked again on each redirect);
- answers slower than the connect/read timeouts, or slower in total than both together;
- bodies over the byte limit, content types outside the allowed list;
- images whose header declares more pixels than the limit (decompression bombs), checked before
  decoding; and files that do not decode;
- malformed references (a bad port, host or IPv6 literal, a scheme other than http(s), a NUL or
  control character): `bad_url`. Anything else that goes wrong with one reference is that
  reference's failure (`other: ...`), never an exception out of `load_many`.

`load_many(refs, deadline)` returns by the request's Deadline (sidecar.deadline): what has not
finished then is a failure `timeout: deadline passed` for that request.
The fetch itself is not cut: it runs on under its own timeouts (connect + read), shared by every
request that wants the same image meanwhile (one fetch per image at a time), and its outcome is
kept: a slow host's image is cached for the next search, and a fetch that fails on its own
(refused, 404, too large, corrupt, forbidden, its own timeout) is remembered for `failure_ttl_s` in
a bounded negative cache, so a dead or hanging image host costs one wait, not one per search,
even when every request's deadline is shorter than the host's timeout. A remembered failure
answers at once with its reason and " (remembered)".

An image is known by its content: `load_many` also returns each image's digest (sha256 of its
bytes), which the pipeline puts in the pair key, so a product image replaced behind the same URL
is a cache miss, not its old score. A loaded image is reused for `revalidate_s`; after that it is
fetched again (with `trust_etag`, revalidated with If-None-Match: a 304 keeps the digest without
a download), so a replaced image is seen within `revalidate_s`.

Connections go to the address the guard checked, resolved once (sidecar.scoring.url_guard).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol
from urllib.parse import urljoin

import httpx
from cachetools import LRUCache, TTLCache

from sidecar.scoring import image_bytes
from sidecar.scoring.url_guard import (
    ImageRefused,
    check_url,
    guarded_transport,
    has_control_character,
    short,
)

if TYPE_CHECKING:
    from PIL.Image import Image

    from sidecar.config import ImageSettings
    from sidecar.deadline import Deadline

log = logging.getLogger(__name__)


class ImageObserver(Protocol):
    """Who hears about image loads (the metrics layer hands one in)."""

    def fetched(self, count: int = 1) -> None: ...

    def failed(self, reason: str) -> None: ...


MAX_REDIRECTS = 3
CONCURRENCY = 16
POOL_TIMEOUT_S = 1.0
# Longer keys are remembered by digest so a long URL cannot make the negative cache large.
MAX_REMEMBERED_KEY = 512
DEADLINE_PASSED = "timeout: deadline passed"
REMEMBERED = " (remembered)"


class Loaded(NamedTuple):
    """What `load_many` gives back, each by ref key."""

    images: dict[str, Image]
    failures: dict[str, str]  # the reason, for each ref that could not be used
    digests: dict[str, str]  # the content digest of each loaded image (the pair key's image part)


@dataclass(frozen=True)
class _Entry:
    image: Image
    digest: str
    etag: str | None  # the validator the host sent, used only with trust_etag
    checked: float  # time.monotonic() of the last fetch or revalidation


def bytes_key(data: bytes) -> str:
    """The key of an image given as bytes: the same as `Query.image_hash` for those bytes."""
    from sidecar.query import Query

    return Query(text="", image_bytes=data).image_hash


class ImageLoader:
    """`load_many(refs) -> (images by key, failure reason by key)`; see the module docstring."""

    def __init__(
        self,
        settings: ImageSettings,
        *,
        local_root: Path,
        resize_pixels: int | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.local_root = local_root.resolve()
        self.resize_pixels = resize_pixels
        self.allow_hosts = {h.lower() for h in settings.allow_hosts}
        # Used from the event loop only (decoding threads return their image to it), so no lock.
        self._cache: LRUCache[str, _Entry] = LRUCache(maxsize=settings.cache_entries)
        # Failed refs -> reason, for a while (the negative cache; event loop only as well).
        self._failed: TTLCache[str, str] = TTLCache(
            maxsize=settings.failure_cache_entries, ttl=settings.failure_ttl_s
        )
        # The fetch of each image being loaded, shared by the requests that want it; a fetch
        # outlives a request's deadline and records its outcome when it ends (_settle).
        self._inflight: dict[str, asyncio.Task[_Entry]] = {}
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.read_timeout_s, connect=settings.connect_timeout_s, pool=POOL_TIMEOUT_S
            ),
            follow_redirects=False,  # redirects are followed by hand, each hop through the guard
            transport=transport or guarded_transport(self.allow_hosts, CONCURRENCY * 2),
            trust_env=False,
        )
        self._limit = asyncio.Semaphore(CONCURRENCY)
        self._observer: ImageObserver | None = None

    def observe_with(self, observer: ImageObserver) -> None:
        """Report each image loaded (cache hits aside) and each failure with its reason."""
        self._observer = observer

    async def load_many(
        self, refs: Sequence[str | bytes], deadline: Deadline | None = None
    ) -> Loaded:
        """Images, failure reasons and content digests, by key; never raises for a bad ref.
        With a `deadline` it returns by then: refs not done are failures `timeout: deadline
        passed` (without, it waits for the fetches' own timeouts)."""
        images: dict[str, Image] = {}
        failures: dict[str, str] = {}
        digests: dict[str, str] = {}
        pending: dict[asyncio.Task[_Entry], str] = {}
        seen: set[str] = set()
        for ref in refs:
            try:
                key = bytes_key(ref) if isinstance(ref, bytes) else ref
            except Exception as exc:  # a ref that cannot even be keyed is skipped, not raised
                log.warning("image ref cannot be keyed: %s", _other(exc))
                continue
            if key in seen:
                continue
            seen.add(key)
            cached = self._cache_get(key)
            if cached is not None and self._fresh(cached, ref):
                images[key], digests[key] = cached.image, cached.digest
                continue
            remembered = self._failed.get(_failure_key(key))
            if remembered is not None:
                self._fail(failures, key, remembered + REMEMBERED)
                continue
            if deadline is not None and deadline.left() <= 0:
                self._fail(failures, key, DEADLINE_PASSED)
                continue
            pending[self._fetching(key, ref, cached)] = key

        if pending:
            timeout = None if deadline is None else deadline.left()
            # asyncio.wait neither cancels the fetches at its timeout nor when this request is
            # cancelled: they are shared and end on their own timeouts
            done, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:  # the deadline passed first; the fetch goes on for later requests
                self._fail(failures, pending[task], DEADLINE_PASSED)
            for task in done:
                key = pending[task]
                if task.cancelled():  # the loader is closing
                    self._fail(failures, key, DEADLINE_PASSED)
                    continue
                error = task.exception()
                if error is None:
                    entry = task.result()
                    images[key], digests[key] = entry.image, entry.digest
                    continue
                self._fail(failures, key, _reason(error))
        return Loaded(images, failures, digests)

    def _fresh(self, entry: _Entry, ref: str | bytes) -> bool:
        """Bytes are their own content; anything read from a URL or a file is read again after
        revalidate_s, so a replaced image is not scored as the old one for long."""
        if isinstance(ref, bytes) or ref.startswith("data:"):
            return True
        return time.monotonic() - entry.checked < self.settings.revalidate_s

    def _fetching(self, key: str, ref: str | bytes, stale: _Entry | None) -> asyncio.Task[_Entry]:
        """The fetch of `key`: the one already running, or a new one under its own timeouts."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._load_one(ref, stale))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._settle(key, done))
        return task

    def _settle(self, key: str, task: asyncio.Task[_Entry]) -> None:
        """Keep a finished fetch's outcome: the image cached, or the failure remembered."""
        self._inflight.pop(key, None)
        if task.cancelled():
            return
        error = task.exception()  # retrieved here, so asyncio never logs it as lost
        if error is None:
            self._cache_put(key, task.result())
            if self._observer is not None:
                self._observer.fetched()
            return
        if not isinstance(error, ImageRefused):
            log.warning("image load failed unexpectedly: %s", short(key), exc_info=error)
        self._remember(key, _reason(error))

    def _fail(self, failures: dict[str, str], key: str, reason: str) -> None:
        failures[key] = reason
        log.info("image refused: %s (%s)", short(key), reason)
        if self._observer is not None:
            self._observer.failed(reason)

    def _remember(self, key: str, reason: str) -> None:
        if key.startswith(("data:", "b64:")):  # not fetched: failing again costs nothing
            return
        self._failed[_failure_key(key)] = reason

    async def _load_one(self, ref: str | bytes, stale: _Entry | None) -> _Entry:
        async with self._limit:
            return await self._load(ref, stale)

    async def _load(self, ref: str | bytes, stale: _Entry | None = None) -> _Entry:
        """One reference's image, under the configured timeouts only: the fetch is shared by
        every request that wants it, whatever their deadlines (load_many keeps those)."""
        etag: str | None = None
        if isinstance(ref, bytes):
            data = ref
            if len(data) > self.settings.max_bytes:
                raise ImageRefused(f"too_large: {len(data)} bytes > {self.settings.max_bytes}")
        elif ref.startswith("data:"):
            data = await asyncio.to_thread(self._inline, ref)  # up to max_bytes of base64
        elif has_control_character(ref):
            raise ImageRefused("bad_url: contains a NUL or control character")
        elif ref.lower().startswith(("http://", "https://")):
            total = self.settings.connect_timeout_s + self.settings.read_timeout_s
            validator = stale.etag if stale is not None and self.settings.trust_etag else None
            try:
                fetched, etag = await asyncio.wait_for(self._fetch(ref, validator), timeout=total)
            except TimeoutError as exc:  # a slow drip that never trips the read timeout
                raise ImageRefused(f"timeout: no full answer within {total:.1f} s") from exc
            if fetched is None and stale is not None:  # 304: the image we hold is current
                return replace(stale, checked=time.monotonic())
            data = fetched or b""
        else:
            data = await asyncio.to_thread(self._read_local, ref)
        image, digest = await asyncio.to_thread(self._decode_and_digest, data)
        return _Entry(image, digest, etag, time.monotonic())

    def _decode_and_digest(self, data: bytes) -> tuple[Image, str]:
        return self._decode(data), image_bytes.content_digest(data)

    async def _fetch(
        self, url: str, validator: str | None = None
    ) -> tuple[bytes | None, str | None]:
        """(body, ETag) of an image URL, under the client's timeouts; body None when `validator`
        still holds (304)."""
        headers = {"If-None-Match": validator} if validator else {}
        for _ in range(MAX_REDIRECTS + 1):
            check_url(url)  # each hop; where it may connect is checked when it connects
            try:
                async with self._client.stream("GET", url, headers=headers) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code == 304 and validator:
                        return None, validator
                    if response.status_code != 200:
                        raise ImageRefused(f"http_status: {response.status_code}")
                    return await self._read_body(response), response.headers.get("etag")
            except httpx.TimeoutException as exc:
                raise ImageRefused(f"timeout: {exc.__class__.__name__}") from exc
            except httpx.InvalidURL as exc:
                raise ImageRefused(f"bad_url: {exc}") from exc
            except httpx.HTTPError as exc:
                raise ImageRefused(f"unreachable: {exc.__class__.__name__}: {exc}") from exc
        raise ImageRefused(f"redirects: more than {MAX_REDIRECTS}")

    async def _read_body(self, response: httpx.Response) -> bytes:
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in self.settings.content_types:
            raise ImageRefused(f"content_type: {kind or 'missing'} is not an allowed image type")
        limit = self.settings.max_bytes
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ImageRefused(f"too_large: {declared} bytes > {limit}")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:  # a lying or missing Content-Length
                raise ImageRefused(f"too_large: more than {limit} bytes")
        return bytes(body)

    def _inline(self, ref: str) -> bytes:
        return image_bytes.inline(ref, self.settings.content_types, self.settings.max_bytes)

    def _read_local(self, ref: str) -> bytes:
        return image_bytes.read_local(ref, self.local_root, self.settings.max_bytes)

    def _decode(self, data: bytes) -> Image:
        return image_bytes.decode(data, self.settings.max_pixels, self.resize_pixels)

    def _cache_get(self, key: str) -> _Entry | None:
        return self._cache.get(key)  # a hit refreshes the LRU order

    def _cache_put(self, key: str, entry: _Entry) -> None:
        self._cache[key] = entry  # evicts the least recently used when full

    async def close(self) -> None:
        for task in list(self._inflight.values()):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        await self._client.aclose()


def _failure_key(key: str) -> str:
    if len(key) <= MAX_REMEMBERED_KEY:
        return key
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _reason(error: BaseException) -> str:
    return str(error) if isinstance(error, ImageRefused) else _other(error)


def _other(exc: BaseException) -> str:
    text = str(exc)
    text = text if len(text) <= 200 else text[:197] + "..."
    name = exc.__class__.__name__
    return f"other: {name}: {text}" if text else f"other: {name}"
