"""The image loader against a real HTTP server on 127.0.0.1: each failure mode is a reason.

The SSRF guard refuses loopback, so the positive cases allowlist 127.0.0.1 and the refusal case
does not.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from sidecar.config import ImageSettings
from sidecar.deadline import Deadline
from sidecar.demo import DEMO_DIR
from sidecar.query import Query
from sidecar.scoring.images import ImageLoader, bytes_key
from sidecar.scoring.url_guard import check_destination


def png(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


GOOD = png()
BOMB = png((3000, 3000), "L")  # 9 Mpx that compress to a few KB


class Handler(BaseHTTPRequestHandler):
    swap: bytes = b""
    not_modified = 0
    hits: dict[str, int] = {}  # noqa: RUF012 - shared counter, the test server is tiny

    def do_GET(self) -> None:
        Handler.hits[self.path] = Handler.hits.get(self.path, 0) + 1
        path = self.path.split("?")[0]
        routes = {
            "/ok.png": (200, "image/png", GOOD),
            "/typed.png": (200, "image/png; charset=binary", GOOD),
            "/page.html": (200, "text/html", b"<html>not an image</html>"),
            "/corrupt.png": (200, "image/png", GOOD[:40] + b"\x00garbage" * 10),
            "/huge.png": (200, "image/png", b"\x89PNG" + b"\x00" * 300_000),
            "/bomb.png": (200, "image/png", BOMB),
            "/missing.png": (404, "text/plain", b"no"),
        }
        if path == "/swap.png":  # whatever image the test put there last
            self._send(200, "image/png", Handler.swap)
        elif path == "/etag.png":  # a validator the host keeps while the image stays
            tag = '"v1"'
            if self.headers.get("If-None-Match") == tag:
                Handler.not_modified += 1
                self.send_response(304)
                self.send_header("ETag", tag)
                self.end_headers()
            else:
                body = GOOD
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("ETag", tag)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
        elif path == "/slow.png":
            time.sleep(1.5)
            self._send(200, "image/png", GOOD)
        elif path == "/sleep.png":  # far beyond any deadline a test sets
            time.sleep(5.0)
            self._send(200, "image/png", GOOD)
        elif path == "/drip.png":  # each byte within the read timeout, the whole far beyond
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(GOOD)))
            self.end_headers()
            try:
                for i in range(len(GOOD)):
                    self.wfile.write(GOOD[i : i + 1])
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
        elif path == "/unsized.png":  # no Content-Length: the limit applies while reading
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                self.wfile.write(b"\x00" * 300_000)
            except OSError:
                pass
        elif path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok.png")
            self.end_headers()
        else:
            self._send(*routes.get(path, (404, "text/plain", b"no")))

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def loader(allow: bool = True, **overrides: object) -> ImageLoader:
    values: dict[str, object] = {
        "connect_timeout_s": 0.5,
        "read_timeout_s": 0.5,
        "max_bytes": 100_000,
        "max_pixels": 4_000_000,
        "allow_hosts": ["127.0.0.1"] if allow else [],
        "cache_entries": 4,
    }
    values.update(overrides)
    return ImageLoader(ImageSettings(**values), local_root=DEMO_DIR)


async def one(images: ImageLoader, ref: str | bytes) -> tuple[Image.Image | None, str | None]:
    try:
        found, failures, _ = await images.load_many([ref])
    finally:
        await images.close()
    key = bytes_key(ref) if isinstance(ref, bytes) else ref
    return found.get(key), failures.get(key)


async def test_fetches_an_allowlisted_image(server: str) -> None:
    image, failure = await one(loader(), f"{server}/ok.png")
    assert failure is None
    assert image is not None and image.size == (64, 48) and image.mode == "RGB"


async def test_content_type_parameters_are_ignored(server: str) -> None:
    image, failure = await one(loader(), f"{server}/typed.png")
    assert failure is None and image is not None


async def test_loopback_is_refused_unless_allowlisted(server: str) -> None:
    image, failure = await one(loader(allow=False), f"{server}/ok.png")
    assert image is None
    assert failure is not None and failure.startswith("forbidden_address: 127.0.0.1")
    assert "allow_hosts" in failure


async def test_metadata_and_private_addresses_are_refused() -> None:
    images = loader(allow=False)
    found, failures, _ = await images.load_many(
        [
            "http://169.254.169.254/latest/meta-data",
            "http://100.100.100.200/latest/meta-data",
            "http://10.0.0.8/a.png",
            "http://[::1]/a.png",
            "http://[fd00:ec2::254]/",
            "http://0.0.0.0:8080/a.png",
        ]
    )
    await images.close()
    assert not found
    assert all(f.startswith("forbidden_address") for f in failures.values()), failures
    assert len(failures) == 6


async def test_slow_server_times_out(server: str) -> None:
    started = time.perf_counter()
    image, failure = await one(loader(), f"{server}/slow.png")
    assert image is None and failure is not None and failure.startswith("timeout")
    assert time.perf_counter() - started < 1.4


async def test_slow_drip_hits_the_total_deadline(server: str) -> None:
    image, failure = await one(loader(), f"{server}/drip.png")
    assert image is None and failure is not None and failure.startswith("timeout")


async def test_wrong_content_type_is_refused(server: str) -> None:
    image, failure = await one(loader(), f"{server}/page.html")
    assert image is None and failure == "content_type: text/html is not an allowed image type"


async def test_huge_body_is_refused_by_declared_length(server: str) -> None:
    image, failure = await one(loader(), f"{server}/huge.png")
    assert image is None and failure == "too_large: 300004 bytes > 100000"


async def test_huge_body_without_length_is_cut_while_reading(server: str) -> None:
    image, failure = await one(loader(), f"{server}/unsized.png")
    assert image is None and failure == "too_large: more than 100000 bytes"


async def test_corrupt_image_is_refused(server: str) -> None:
    image, failure = await one(loader(), f"{server}/corrupt.png")
    assert image is None and failure is not None and failure.startswith("corrupt")


async def test_decompression_bomb_is_refused_before_decoding(server: str) -> None:
    assert len(BOMB) < 100_000  # small on the wire: only the pixel limit catches it
    image, failure = await one(loader(), f"{server}/bomb.png")
    assert image is None and failure == "too_many_pixels: 3000x3000 > 4000000 pixels"


async def test_http_error_status_is_a_reason(server: str) -> None:
    _, failure = await one(loader(), f"{server}/missing.png")
    assert failure == "http_status: 404"


async def test_redirects_are_followed_through_the_guard(server: str) -> None:
    image, failure = await one(loader(), f"{server}/redirect")
    assert failure is None and image is not None


async def test_local_catalog_paths_resolve_under_the_root_only() -> None:
    images = loader()
    found, failures, _ = await images.load_many(
        ["images/p00001.png", "../catalog.jsonl", "/etc/passwd", "images/nope.png"]
    )
    await images.close()
    assert set(found) == {"images/p00001.png"}
    assert failures["../catalog.jsonl"].startswith("forbidden_path")
    assert failures["/etc/passwd"].startswith("forbidden_path")
    assert failures["images/nope.png"] == "missing: images/nope.png"


async def test_query_bytes_are_keyed_by_the_query_image_hash() -> None:
    images = loader()
    found, failures, _ = await images.load_many([GOOD, b"not an image"])
    await images.close()
    assert Query(text="", image_bytes=GOOD).image_hash in found
    assert failures[Query(text="", image_bytes=b"not an image").image_hash].startswith("corrupt")


async def test_decoded_images_are_cached_and_bounded(server: str) -> None:
    images = loader(cache_entries=2)
    url = f"{server}/ok.png?cache"
    before = Handler.hits.get("/ok.png?cache", 0)
    await images.load_many([url])
    await images.load_many([url])
    assert Handler.hits["/ok.png?cache"] == before + 1  # the second came from the cache
    await images.load_many([f"{server}/ok.png?a", f"{server}/ok.png?b"])
    await images.load_many([url])
    await images.close()
    assert Handler.hits["/ok.png?cache"] == before + 2  # evicted by two newer entries


async def test_images_are_shrunk_to_the_scorer_budget(tmp_path: Path) -> None:
    (tmp_path / "big.png").write_bytes(png((1000, 800)))
    images = ImageLoader(ImageSettings(), local_root=tmp_path, resize_pixels=64 * 28 * 28)
    found, _, _ = await images.load_many(["big.png"])
    await images.close()
    width, height = found["big.png"].size
    assert width * height <= 64 * 28 * 28
    assert abs(width / height - 1000 / 800) < 0.05


async def test_public_addresses_pass_the_guard() -> None:
    # IP literals: no DNS needed; the address returned is the one a connection goes to
    assert await check_destination("http://93.184.216.34/a.png", set()) == "93.184.216.34"
    v6 = "2606:2800:220:1:248:1893:25c8:1946"
    assert await check_destination(f"https://[{v6}]/a.png", set()) == v6


async def test_inline_data_images_are_decoded_under_the_same_limits() -> None:
    import base64

    encoded = base64.b64encode(png((20, 10))).decode()
    image, reason = await one(loader(), f"data:image/png;base64,{encoded}")
    assert reason is None and image is not None and image.size == (20, 10)
    _, reason = await one(loader(), f"data:text/html;base64,{encoded}")
    assert reason is not None and reason.startswith("content_type")
    _, reason = await one(loader(), "data:image/png;base64,%%%")
    assert reason is not None and reason.startswith("corrupt")
    _, reason = await one(loader(max_bytes=10), f"data:image/png;base64,{encoded}")
    assert reason is not None and reason.startswith("too_large")


class RecordingObserver:
    def __init__(self) -> None:
        self.fetched_count = 0
        self.reasons: list[str] = []

    def fetched(self, count: int = 1) -> None:
        self.fetched_count += count

    def failed(self, reason: str) -> None:
        self.reasons.append(reason)


async def test_loads_and_failures_are_reported_to_the_observer(server: str) -> None:
    images = loader()
    observer = RecordingObserver()
    images.observe_with(observer)
    try:
        await images.load_many([f"{server}/ok.png", f"{server}/corrupt.png"])
        await images.load_many([f"{server}/ok.png"])  # a cache hit is not a new load
    finally:
        await images.close()
    assert observer.fetched_count == 1
    assert len(observer.reasons) == 1 and observer.reasons[0].startswith("corrupt")


MALFORMED = [
    "http://h:abc/",
    "http://[::1/",
    "http://a..b/x.png",
    "http://x.example:99999/",
    "http://x.example:0/a.png",
    "http://h/a\x00b.png",
    "images/p\x00.png",
    "http://" + "a" * 70 + ".example/a.png",
]


@pytest.mark.parametrize("allow_hosts", [[], ["h", "a..b", "x.example"]])
async def test_malformed_refs_are_failures_not_exceptions(allow_hosts: list[str]) -> None:
    images = loader(allow_hosts=allow_hosts)  # allowlisted hosts are checked as well
    try:
        found, failures, _ = await images.load_many(MALFORMED)
    finally:
        await images.close()
    assert not found
    assert set(failures) == set(MALFORMED)
    assert all(reason.startswith("bad_url: ") for reason in failures.values()), failures
    assert "port" in failures["http://h:abc/"] and "port" in failures["http://x.example:99999/"]
    assert "NUL" in failures["http://h/a\x00b.png"] and "NUL" in failures["images/p\x00.png"]


async def test_an_unexpected_error_is_that_refs_failure_only(server: str) -> None:
    images = loader()

    def explode(data: bytes) -> Image.Image:
        raise RuntimeError("boom")

    images._decode = explode  # type: ignore[method-assign]
    try:
        found, failures, _ = await images.load_many([f"{server}/ok.png?explode", "images/nope.png"])
    finally:
        await images.close()
    assert not found
    assert failures[f"{server}/ok.png?explode"] == "other: RuntimeError: boom"
    assert failures["images/nope.png"] == "missing: images/nope.png"


async def test_the_deadline_bounds_a_slow_host(server: str) -> None:
    images = loader(connect_timeout_s=10.0, read_timeout_s=10.0)  # only the deadline can stop it
    slow, fast = f"{server}/sleep.png?deadline", f"{server}/ok.png?deadline"
    started = time.perf_counter()
    try:
        found, failures, _ = await images.load_many([slow, fast], deadline=Deadline.after(0.3))
        elapsed = time.perf_counter() - started
        assert failures == {slow: "timeout: deadline passed"}
        assert set(found) == {fast}
        assert elapsed < 4.0  # well before the server's 5 s sleep ends
        # The deadline was the request's, not the host's fault: not remembered.
        _, again, _ = await images.load_many([slow], deadline=Deadline.after(0.2))
        assert again == {slow: "timeout: deadline passed"}
    finally:
        await images.close()


async def test_a_deadline_already_passed_fetches_nothing(server: str) -> None:
    images = loader()
    url = f"{server}/ok.png?late"
    try:
        _, failures, _ = await images.load_many([url], deadline=Deadline.after(-1.0))
    finally:
        await images.close()
    assert failures == {url: "timeout: deadline passed"}
    assert Handler.hits.get("/ok.png?late", 0) == 0


async def test_a_failed_fetch_is_remembered(server: str) -> None:
    images = loader()
    url = f"{server}/missing.png?remember"
    try:
        _, first, _ = await images.load_many([url])
        started = time.perf_counter()
        _, second, _ = await images.load_many([url], deadline=Deadline.after(5.0))
        elapsed = time.perf_counter() - started
    finally:
        await images.close()
    assert first == {url: "http_status: 404"}
    assert second == {url: "http_status: 404 (remembered)"}
    assert Handler.hits["/missing.png?remember"] == 1  # the second never reached the server
    assert elapsed < 0.1


async def test_a_fetch_timeout_is_remembered_until_its_ttl(server: str) -> None:
    images = loader(failure_ttl_s=0.5)
    url = f"{server}/slow.png?remember"
    try:
        _, first, _ = await images.load_many([url])
        _, second, _ = await images.load_many([url])
        await asyncio.sleep(0.6)  # past the TTL: forgotten, fetched again
        _, third, _ = await images.load_many([url])
    finally:
        await images.close()
    assert first[url].startswith("timeout: ") and "deadline" not in first[url]
    assert second == {url: first[url] + " (remembered)"}
    assert not third[url].endswith("(remembered)")
    assert Handler.hits["/slow.png?remember"] == 2


@pytest.mark.parametrize(
    ("address", "carried"),
    [
        ("2002:7f00:1::", "127.0.0.1"),  # 6to4
        ("2002:a00:1::", "10.0.0.1"),
        ("64:ff9b::7f00:1", "127.0.0.1"),  # NAT64
        ("64:ff9b::a00:1", "10.0.0.1"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1"),  # Teredo: inverted client
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1"),
    ],
)
async def test_ipv6_forms_of_forbidden_ipv4_are_refused(address: str, carried: str) -> None:
    url = f"http://[{address}]/a.png"
    image, failure = await one(loader(allow=False), url)
    assert image is None and failure is not None
    assert failure.startswith(f"forbidden_address: {address}"), failure
    assert f"carries {carried}" in failure


async def test_ipv6_forms_of_public_ipv4_pass_the_guard() -> None:
    images = loader(allow=False)
    await check_destination("http://[2002:808:808::]/a.png", set())  # 6to4 of 8.8.8.8
    await images.close()


async def test_an_image_is_known_by_its_content_and_read_again_after_revalidate_s(
    server: str,
) -> None:
    """A product image replaced behind the same URL gets a new digest (the pair key's image
    part) once revalidate_s has passed; within it the loaded image is reused."""
    images = loader(revalidate_s=0.2)
    url = f"{server}/swap.png?content"
    Handler.swap = png((10, 10))
    _, _, before = await images.load_many([url])
    Handler.swap = png((12, 12))
    _, _, within = await images.load_many([url])
    assert within[url] == before[url]  # reused, not fetched again
    await asyncio.sleep(0.3)
    found, _, after = await images.load_many([url])
    assert after[url] != before[url] and found[url].size == (12, 12)
    await images.close()


async def test_trusted_etags_revalidate_without_downloading(server: str) -> None:
    images = loader(revalidate_s=0.05, trust_etag=True)
    url = f"{server}/etag.png?trusted"
    _, _, first = await images.load_many([url])
    await asyncio.sleep(0.1)
    seen = Handler.not_modified
    found, failures, again = await images.load_many([url])
    assert Handler.not_modified == seen + 1  # asked with If-None-Match, answered 304
    assert again == first and url in found and not failures
    await images.close()


async def test_untrusted_etags_are_not_sent(server: str) -> None:
    images = loader(revalidate_s=0.05)
    url = f"{server}/etag.png?untrusted"
    await images.load_many([url])
    await asyncio.sleep(0.1)
    seen = Handler.not_modified
    await images.load_many([url])
    assert Handler.not_modified == seen  # fetched in full again
    await images.close()


async def test_a_connection_goes_to_the_address_the_guard_checked(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name is resolved once, by the guard, and the connection uses that
    answer. `rebind.invalid` resolves nowhere for anyone else, so fetching it at all shows that
    nothing resolved it a second time."""
    from sidecar.scoring import url_guard

    answers: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        answers.append(host)
        return ["127.0.0.1"]

    monkeypatch.setattr(url_guard, "resolve", resolve)
    port = server.rsplit(":", 1)[1]
    images = loader(allow_hosts=["rebind.invalid"])
    found, failures, _ = await images.load_many([f"http://rebind.invalid:{port}/ok.png?pin"])
    assert not failures and len(found) == 1
    assert answers == ["rebind.invalid"]
    await images.close()


async def test_a_name_that_resolves_to_a_private_address_is_refused_at_connect(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sidecar.scoring import url_guard

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    monkeypatch.setattr(url_guard, "resolve", resolve)
    port = server.rsplit(":", 1)[1]
    before = Handler.hits.get("/ok.png?private", 0)
    _, failure = await one(loader(allow=False), f"http://shop.invalid:{port}/ok.png?private")
    assert failure is not None and failure.startswith("forbidden_address: shop.invalid"), failure
    assert Handler.hits.get("/ok.png?private", 0) == before  # never reached


async def test_a_fetch_cut_by_the_deadline_goes_on_and_its_image_is_kept(server: str) -> None:
    """The request's deadline ends the request's wait, not the fetch: the slow host's image is
    there for the next search, fetched once."""
    images = loader(connect_timeout_s=5.0, read_timeout_s=5.0)
    url = f"{server}/slow.png?kept"  # answers after 1.5 s
    try:
        _, first, _ = await images.load_many([url], deadline=Deadline.after(0.2))
        _, joined, _ = await images.load_many([url], deadline=Deadline.after(0.2))
        await asyncio.sleep(1.6)
        found, later, _ = await images.load_many([url], deadline=Deadline.after(0.2))
    finally:
        await images.close()
    assert first == joined == {url: "timeout: deadline passed"}
    assert url in found and not later
    assert Handler.hits["/slow.png?kept"] == 1  # one fetch, shared


async def test_a_hanging_host_is_remembered_though_every_deadline_is_shorter(server: str) -> None:
    """Every request gives the images less time than the host's own timeout: the fetch runs to
    that timeout anyway, so the host is remembered and costs one wait, not one per search."""
    images = loader(connect_timeout_s=0.3, read_timeout_s=0.3)
    url = f"{server}/sleep.png?hang"  # answers after 5 s
    try:
        _, first, _ = await images.load_many([url], deadline=Deadline.after(0.1))
        await asyncio.sleep(0.8)  # past the host's own timeout
        _, second, _ = await images.load_many([url], deadline=Deadline.after(0.1))
    finally:
        await images.close()
    assert first == {url: "timeout: deadline passed"}
    assert second[url].startswith("timeout: ") and second[url].endswith("(remembered)")
