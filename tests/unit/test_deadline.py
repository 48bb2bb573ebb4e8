"""One Deadline per request, from its arrival to every stage: the Deadline's own arithmetic (on a
clock the test moves), the one place a route makes it, and the stages that receive it (the
scorer on every route with a budget, the remote scorer's HTTP call, the engine client)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from sidecar import deadline as deadline_mod
from sidecar.api.mapping import deadline_for
from sidecar.backends.cluster import ClusterBackend
from sidecar.config import EngineSettings, FieldMap, Settings
from sidecar.deadline import GRACE_S, LEAST_WAIT_S, Deadline
from sidecar.documents import Document, make_document
from sidecar.errors import InvalidRequest
from sidecar.observability.middleware import ARRIVED
from sidecar.query import Query
from sidecar.scoring.minilm import MiniLMScorer
from sidecar.scoring.remote import HTTP_GRACE_S, RemoteScorer
from sidecar.scoring_service import ANSWER_RESERVE_S


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The Deadline module's perf_counter, moved by hand: `clock[0] = ...`."""
    now = [1000.0]
    monkeypatch.setattr(deadline_mod, "time", SimpleNamespace(perf_counter=lambda: now[0]))
    return now


def test_after_and_since_count_from_now_and_from_an_earlier_instant(clock: list[float]) -> None:
    fresh = Deadline.after(2.0)
    assert (fresh.at, fresh.budget, fresh.budget_ms, fresh.left()) == (1002.0, 2.0, 2000.0, 2.0)
    arrived = Deadline.since(999.5, 2.0)  # the body took half a second to arrive
    assert arrived.budget == 2.0 and arrived.left() == pytest.approx(1.5)
    clock[0] = 1005.0
    assert fresh.left() == 0.0  # never negative


def test_share_is_a_fraction_of_what_is_left_now(clock: list[float]) -> None:
    request = Deadline.since(999.0, 2.0)  # 1 s left
    engine = request.share(0.6)
    assert engine.budget == pytest.approx(0.6) and engine.at == pytest.approx(1000.6)
    assert engine.budget_ms == 600.0
    clock[0] = 1000.5
    assert request.share(0.25).budget == pytest.approx(0.125)  # of the 0.5 s left then
    clock[0] = 1002.0
    passed = request.share(0.6)
    assert passed.budget == 0.0 and passed.left() == 0.0


def test_less_keeps_a_reserve_for_what_follows(clock: list[float]) -> None:
    request = Deadline.after(1.0)
    model = request.less(ANSWER_RESERVE_S)
    assert model.at == pytest.approx(request.at - ANSWER_RESERVE_S)
    assert model.budget == pytest.approx(1.0 - ANSWER_RESERVE_S)
    clock[0] = 1000.99  # 10 ms left: less than the reserve
    late = request.less(ANSWER_RESERVE_S)
    assert late.budget == 0.0 and late.left() == 0.0


def test_waits_never_cancel_at_once_and_outwait_a_stage_that_keeps_its_own(
    clock: list[float],
) -> None:
    engine = Deadline.after(0.4)
    assert engine.wait_s() == pytest.approx(0.4)
    assert engine.outwait_s() == pytest.approx(0.4 + GRACE_S)
    clock[0] = 1001.0
    assert engine.wait_s() == LEAST_WAIT_S
    assert engine.outwait_s() == pytest.approx(GRACE_S)


def request_that_arrived(at: float | None) -> Request:
    state = {} if at is None else {ARRIVED: at}
    return Request({"type": "http", "method": "POST", "headers": [], "state": state})


def services_with(**limits: Any) -> Any:
    return SimpleNamespace(settings=Settings(limits=limits))


def test_a_routes_deadline_counts_from_the_requests_arrival() -> None:
    services = services_with(default_timeout_ms=2000, max_timeout_ms=5000)
    late = deadline_for(request_that_arrived(time.perf_counter() - 0.9), 1000, services)
    assert late.budget == 1.0 and late.left() <= 0.1
    default = deadline_for(request_that_arrived(time.perf_counter()), None, services)
    assert default.budget == 2.0 and 1.9 < default.left() <= 2.0
    rerank = deadline_for(request_that_arrived(None), None, services, default_ms=4000)
    assert rerank.budget == 4.0  # outside the middleware: from now
    with pytest.raises(InvalidRequest) as above:
        deadline_for(request_that_arrived(None), 5001, services)
    assert above.value.field == "timeout_ms"


class Recording:
    """The shared MiniLM, recording the Deadline every call was given."""

    reads_images = False

    def __init__(self, inner: MiniLMScorer) -> None:
        self.inner, self.model_id, self.state = inner, inner.model_id, inner.state
        self.score_identity = inner.score_identity + "+recording"  # its own cache entries
        self.given: list[tuple[float, float]] = []  # (budget, left when called)

    async def load(self) -> None:
        return None

    async def score(
        self,
        query: Query,
        documents: Sequence[Document],
        instruction: str,
        images: Mapping[str, Any] | None = None,
        *,
        deadline: Deadline,
    ) -> list[float]:
        self.given.append((deadline.budget, deadline.left()))
        return await self.inner.score(query, documents, instruction, images, deadline=deadline)

    async def close(self) -> None:
        return None


TIMEOUT_MS = 1500  # under every route's default (/search 2 s, the rerank routes 10 s)
DOCS = ["waterproof hiking boots", "merino wool socks"]
ROUTES: dict[str, tuple[str, Any]] = {
    "search": ("/search", {"query": "hiking boots", "timeout_ms": TIMEOUT_MS}),
    "api-rerank": ("/api/rerank", {"query": "boots", "documents": DOCS, "timeout_ms": TIMEOUT_MS}),
    "v1": ("/v1/rerank", {"query": "boots", "documents": DOCS, "timeout_ms": TIMEOUT_MS}),
    "v2": ("/v2/rerank", {"query": "boots", "documents": DOCS, "timeout_ms": TIMEOUT_MS}),
    "tei": ("/rerank", {"query": "boots", "texts": DOCS, "timeout_ms": TIMEOUT_MS}),
    "explain": (
        "/api/explain",
        {"query": "boots", "product": {"title": "hiking boots"}, "timeout_ms": TIMEOUT_MS},
    ),
    "drop-in": (
        "/products/_search",
        {"query": {"match": {"title": "hiking boots"}}, "ext": {"rerank": {"timeout_ms": 1500}}},
    ),
    "msearch": (
        "/products/_msearch",
        "{}\n"
        + json.dumps(
            {"query": {"match": {"title": "boots"}}, "ext": {"rerank": {"timeout_ms": 1500}}}
        )
        + "\n",
    ),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_the_scorer_receives_the_requests_deadline(
    route: str, client_factory: Any, minilm: MiniLMScorer
) -> None:
    scorer = Recording(minilm)
    client = client_factory(scorer=scorer)
    path, body = ROUTES[route]
    if isinstance(body, str):
        answer = client.post(path, content=body, headers={"content-type": "application/x-ndjson"})
    else:
        answer = client.post(path, json=body)
    assert answer.status_code == 200, answer.text
    assert scorer.given, "the scorer was not called"
    for budget, left in scorer.given:
        # the request's timeout_ms, counted from its arrival, less the answer's reserve
        assert 0 < left <= budget <= TIMEOUT_MS / 1000 - ANSWER_RESERVE_S


def remote_recorder(seen: list[httpx.Request]) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        count = len(json.loads(request.content)["documents"])
        results = [{"index": i, "relevance_score": 0.5} for i in range(count)]
        return httpx.Response(200, json={"results": results})

    return httpx.MockTransport(answer)


@pytest.mark.parametrize(
    ("left_s", "sent_ms"), [(0.5, 500), (60.0, 10_000), (0.0, 1)], ids=["short", "long", "passed"]
)
async def test_the_remote_scorer_bounds_its_http_call_by_the_deadline(
    left_s: float, sent_ms: int
) -> None:
    seen: list[httpx.Request] = []
    scorer = RemoteScorer("http://peer", timeout_s=10.0, transport=remote_recorder(seen))
    documents = [make_document("a", "boots"), make_document("b", "socks")]
    try:
        scores = await scorer.score(Query("boots"), documents, "", deadline=Deadline.after(left_s))
    finally:
        await scorer.close()
    assert scores == [0.5, 0.5]
    (sent,) = seen
    budget_ms = json.loads(sent.content)["timeout_ms"]
    assert sent_ms - 20 <= budget_ms <= sent_ms  # what was left when it was sent, at most 10 s
    read_timeout = sent.extensions["timeout"]["read"]
    assert read_timeout == pytest.approx(budget_ms / 1000 + HTTP_GRACE_S)
    assert read_timeout <= scorer.http_timeout_s


class Recorded(ClusterBackend):
    name = "recorded"

    def __init__(self, request_timeout_s: float) -> None:
        super().__init__(EngineSettings(request_timeout_s=request_timeout_s), FieldMap())
        self.waits: list[float] = []

    async def _send(self, index: str | None, body: Mapping[str, Any], wait: float) -> Any:
        self.waits.append(wait)
        return {"hits": {"hits": [], "total": {"value": 0}}}


async def test_the_engine_clients_timeout_is_what_is_left_of_its_deadline() -> None:
    backend = Recorded(request_timeout_s=10.0)
    await backend.search("products", "boots", [], 10, Deadline.after(0.3))
    await backend.search("products", "boots", [], 10, Deadline.after(-1.0))
    capped = Recorded(request_timeout_s=0.1)
    await capped.search("products", "boots", [], 10, Deadline.after(5.0))
    assert 0.25 < backend.waits[0] <= 0.3
    assert backend.waits[1] == LEAST_WAIT_S  # a passed deadline: the least wait, never 0
    assert capped.waits == [0.1]  # engine.request_timeout_s stays the ceiling
