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
  decoding; and files that do not decode.

Known gap: the guard resolves the host, then httpx resolves it again to connect, so a DNS answer
that changes in between (rebinding) is not caught; deploy behind an egress proxy where that matters.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import ipaddress
import logging
import socket
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urljoin, urlsplit

import httpx
from cachetools import LRUCache

if TYPE_CHECKING:
    from PIL.Image import Image

    from sidecar.config import ImageSettings

log = logging.getLogger(__name__)


class ImageObserver(Protocol):
    """Who hears about image loads (the metrics layer hands one in)."""

    def fetched(self, count: int = 1) -> None: ...

    def failed(self, reason: str) -> None: ...


MAX_REDIRECTS = 3
CONCURRENCY = 16


class ImageRefused(Exception):
    """An image that cannot be used; the message is the flag's reason."""


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
        self._cache: LRUCache[str, Image] = LRUCache(maxsize=settings.cache_entries)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.read_timeout_s, connect=settings.connect_timeout_s, pool=1.0
            ),
            follow_redirects=False,  # redirects are followed by hand, each hop through the guard
            transport=transport,
            trust_env=False,
        )
        self._limit = asyncio.Semaphore(CONCURRENCY)
        self._observer: ImageObserver | None = None

    def observe_with(self, observer: ImageObserver) -> None:
        """Report each image loaded (cache hits aside) and each failure with its reason."""
        self._observer = observer

    async def load_many(
        self, refs: Sequence[str | bytes]
    ) -> tuple[dict[str, Image], dict[str, str]]:
        keyed = {(bytes_key(r) if isinstance(r, bytes) else r): r for r in refs}
        images: dict[str, Image] = {}
        failures: dict[str, str] = {}

        async def one(key: str, ref: str | bytes) -> None:
            cached = self._cache_get(key)
            if cached is not None:
                images[key] = cached
                return
            try:
                async with self._limit:
                    image = await self._load(ref)
            except ImageRefused as exc:
                failures[key] = str(exc)
                log.info("image refused: %s (%s)", _short(key), exc)
                if self._observer is not None:
                    self._observer.failed(str(exc))
                return
            if self._observer is not None:
                self._observer.fetched()
            self._cache_put(key, image)
            images[key] = image

        await asyncio.gather(*(one(k, r) for k, r in keyed.items()))
        return images, failures

    async def _load(self, ref: str | bytes) -> Image:
        if isinstance(ref, bytes):
            data = ref
            if len(data) > self.settings.max_bytes:
                raise ImageRefused(f"too_large: {len(data)} bytes > {self.settings.max_bytes}")
        elif ref.startswith("data:"):
            data = self._inline(ref)
        elif ref.startswith(("http://", "https://")):
            total = self.settings.connect_timeout_s + self.settings.read_timeout_s
            try:
                data = await asyncio.wait_for(self._fetch(ref), timeout=total)
            except TimeoutError as exc:  # a slow drip that never trips the read timeout
                raise ImageRefused(f"timeout: no full answer within {total:.1f} s") from exc
        else:
            data = await asyncio.to_thread(self._read_local, ref)
        return await asyncio.to_thread(self._decode, data)

    async def _fetch(self, url: str) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            await self._guard(url)
            try:
                async with self._client.stream("GET", url) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status_code != 200:
                        raise ImageRefused(f"http_status: {response.status_code}")
                    return await self._read_body(response)
            except httpx.TimeoutException as exc:
                raise ImageRefused(f"timeout: {exc.__class__.__name__}") from exc
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

    async def _guard(self, url: str) -> None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not host:
            raise ImageRefused("bad_url: no host")
        if host in self.allow_hosts:
            return
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            raise ImageRefused(f"unresolvable: {host}") from exc
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if _forbidden(address):
                raise ImageRefused(
                    f"forbidden_address: {host} resolves to {address} "
                    "(loopback/private/link-local; allowlist the host in images.allow_hosts)"
                )

    def _inline(self, ref: str) -> bytes:
        """An uploaded image sent inline (`data:image/png;base64,...`), under the same type and
        size limits as a fetched one."""
        header, _, payload = ref.partition(",")
        kind = header.removeprefix("data:").split(";")[0].strip().lower()
        if not header.endswith(";base64"):
            raise ImageRefused("bad_url: a data: image must be base64")
        if kind not in self.settings.content_types:
            raise ImageRefused(f"content_type: {kind or 'missing'} is not an allowed image type")
        if len(payload) * 3 // 4 > self.settings.max_bytes:
            raise ImageRefused(f"too_large: more than {self.settings.max_bytes} bytes")
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageRefused("corrupt: the data: image is not valid base64") from exc

    def _read_local(self, ref: str) -> bytes:
        relative = ref.removeprefix("file://") if ref.startswith("file://") else ref
        path = (self.local_root / relative).resolve()
        if not path.is_relative_to(self.local_root) or Path(relative).is_absolute():
            raise ImageRefused("forbidden_path: outside the local image root")
        try:
            size = path.stat().st_size
            if size > self.settings.max_bytes:
                raise ImageRefused(f"too_large: {size} bytes > {self.settings.max_bytes}")
            return path.read_bytes()
        except OSError as exc:
            raise ImageRefused(f"missing: {relative}") from exc

    def _decode(self, data: bytes) -> Image:
        from PIL import Image, UnidentifiedImageError

        try:
            with warnings.catch_warnings():  # the pixel limit below is ours to enforce
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                opened = Image.open(io.BytesIO(data))
            width, height = opened.size
            if width * height > self.settings.max_pixels:  # before decoding: bombs stop here
                raise ImageRefused(
                    f"too_many_pixels: {width}x{height} > {self.settings.max_pixels} pixels"
                )
            opened.load()
            image = opened.convert("RGB")
        except ImageRefused:
            raise
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise ImageRefused(f"corrupt: {exc.__class__.__name__}") from exc
        except Image.DecompressionBombError as exc:
            raise ImageRefused("too_many_pixels: decompression bomb") from exc
        return self._shrink(image)

    def _shrink(self, image: Image) -> Image:
        """Down-size to the scorer's pixel budget so cached images stay small; the model's own
        resize then has little left to do."""
        if not self.resize_pixels:
            return image
        width, height = image.size
        if width * height <= self.resize_pixels:
            return image
        scale = (self.resize_pixels / (width * height)) ** 0.5
        return image.resize((max(28, int(width * scale)), max(28, int(height * scale))))

    def _cache_get(self, key: str) -> Image | None:
        return self._cache.get(key)  # a hit refreshes the LRU order

    def _cache_put(self, key: str, image: Image) -> None:
        self._cache[key] = image  # evicts the least recently used when full

    async def close(self) -> None:
        await self._client.aclose()


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global  # shared/carrier-grade space: Alibaba's 100.100.100.200
    )


def _short(key: str) -> str:
    return key if len(key) <= 120 else key[:117] + "..."
