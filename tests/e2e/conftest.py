"""End-to-end fixtures: real sidecars served by uvicorn on 127.0.0.1, and Debian's Chromium.

Each sidecar is the embedded default (tantivy over the demo catalog, in-process cache) sharing the
session's loaded MiniLM; only the scorer differs where a test needs a state MiniLM cannot show
(reading images, a load that never finishes, a load that failed). Screenshots land in
test-artifacts/ (gitignored).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from sidecar.app import create_app
from sidecar.deadline import Deadline
from sidecar.documents import Document
from sidecar.query import Query
from sidecar.scoring.base import ModelState
from sidecar.scoring.minilm import MiniLMScorer
from tests.conftest import make_settings
from tests.doubles import NeverReadyScorer
from tests.live_server import serve_in_thread

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


# ---- scorers for states MiniLM cannot show --------------------------------------------------


@dataclass
class Received:
    query_image: bytes | None
    query_image_url: str | None
    document_images: list[str | None]
    image_keys: list[str]
    instruction: str


class ImageRecordingScorer:
    """MiniLM that says it reads images and records the images each call receives.

    Why a wrapper: the default MiniLM scorer reads text only (`reads_images = False`), so an image
    query is refused before it reaches a model; the real image-reading model is the Lychee scorer
    (Qwen2.5-VL), built separately and far too heavy for a browser test on a CPU. This wrapper
    lets the test see what the page's upload delivered to the scorer, while scores still come
    from the real MiniLM on the text. `delay_s` makes requests slow for the cancel test.
    """

    reads_images = True

    def __init__(self, inner: MiniLMScorer) -> None:
        self.inner = inner
        self.model_id = f"{inner.model_id}+image-recorder"
        self.received: list[Received] = []
        self.delay_s = 0.0
        self.state: ModelState = inner.state

    async def load(self) -> None:
        if not self.inner.state.ready:
            await self.inner.load()
        self.state = self.inner.state

    async def score(
        self,
        query: Query,
        documents: Sequence[Document],
        instruction: str,
        images: Mapping[str, Any] | None = None,
        *,
        deadline: Deadline,
    ) -> list[float]:
        self.received.append(
            Received(
                query_image=query.image_bytes,
                query_image_url=query.image_url,
                document_images=[d.image_url for d in documents],
                image_keys=sorted(images or {}),
                instruction=instruction,
            )
        )
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return await self.inner.score(query, documents, instruction, images, deadline=deadline)

    async def close(self) -> None:
        return None


class StuckLoadingScorer:
    """A model whose load reports progress and never completes (a big checkpoint still loading)."""

    reads_images = False
    model_id = "stuck-loading-model"

    def __init__(self) -> None:
        self.state = ModelState(status="loading", progress=0.0, device="cpu")

    async def load(self) -> None:
        self.state.progress = 0.42
        await asyncio.Event().wait()  # cancelled by the app's shutdown

    async def score(self, *args: Any, **kwargs: Any) -> list[float]:
        raise RuntimeError("not loaded")

    async def close(self) -> None:
        return None


FAILED_REASON = "not enough GPU memory: needs 18.0 GiB, 5.2 GiB free on cuda:0"


def failed_scorer() -> NeverReadyScorer:
    """A model that could not load, with the reason the sidecar gives (as Lychee does on OOM)."""
    return NeverReadyScorer("lychee-rerank-mm", status="failed", reason=FAILED_REASON, progress=0.0)


# ---- a real sidecar on a free port, in a background thread ----------------------------------


@dataclass
class LiveSidecar:
    url: str
    scorer: Any
    server: uvicorn.Server
    thread: threading.Thread
    extra: dict[str, Any] = field(default_factory=dict)


def start_sidecar(app: FastAPI, scorer: Any) -> LiveSidecar:
    url, server, thread = serve_in_thread(app, start_timeout_s=60)
    return LiveSidecar(url, scorer, server, thread)


def stop_sidecar(live: LiveSidecar) -> None:
    live.server.should_exit = True
    live.thread.join(timeout=15)


@pytest.fixture(scope="session")
def sidecar(minilm: MiniLMScorer) -> Iterator[LiveSidecar]:
    """The embedded default: MiniLM (text only), tantivy, in-process cache."""
    live = start_sidecar(create_app(make_settings(), wait_for_model=True, scorer=minilm), minilm)
    yield live
    stop_sidecar(live)


@pytest.fixture(scope="session")
def image_sidecar(minilm: MiniLMScorer) -> Iterator[LiveSidecar]:
    scorer = ImageRecordingScorer(minilm)
    live = start_sidecar(create_app(make_settings(), wait_for_model=True, scorer=scorer), scorer)
    yield live
    stop_sidecar(live)


@pytest.fixture
def loading_sidecar() -> Iterator[LiveSidecar]:
    scorer = StuckLoadingScorer()
    live = start_sidecar(create_app(make_settings(), scorer=scorer), scorer)
    yield live
    stop_sidecar(live)


@pytest.fixture
def failed_sidecar() -> Iterator[LiveSidecar]:
    scorer = failed_scorer()
    live = start_sidecar(create_app(make_settings(), scorer=scorer), scorer)
    yield live
    stop_sidecar(live)


# ---- the browser ----------------------------------------------------------------------------


# Package scope: Playwright's sync API holds an event loop in the main thread while it runs, so
# it must close with the e2e package, before tests that call asyncio.run() in that thread.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    """open_page(url, width=1280) -> a fresh page (own storage) on the playground at `url`."""
    contexts: list[Any] = []

    def open_(url: str, width: int = 1280, height: int = 900) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{url}/ui")
        return page

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def lychee_sidecar(tmp_path: Path) -> Iterator[LiveSidecar]:
    """The real image-reading scorer: Lychee (Qwen2.5-VL) code on a tiny random checkpoint."""
    from tests.fixtures.tiny_qwen import build_tiny_qwen

    model = build_tiny_qwen(tmp_path / "tiny-qwen")
    settings = make_settings(
        scorer={"kind": "lychee", "model_path": str(model), "max_pixels": 64 * 28 * 28}
    )
    app = create_app(settings, wait_for_model=True)
    live = start_sidecar(app, None)
    yield live
    stop_sidecar(live)
