"""What every scenario shares: the suite's options and its shared processes, the /search load
loop with its per-request record, timed single requests, and the summaries of records (non-2xx
by code, p99, time to recover)."""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.faults.engine import EngineFront
from bench.faults.progress import progress
from bench.search_latency import percentile
from bench.server import serving_process

RESULTS = Path(__file__).parents[1] / "results"
CLIENTS = 8
WINDOW = 50
# 5xx answers the API documents (engine down / too slow, model not ready, scoring failed):
# anything else at or above 500 is a bug.
DOCUMENTED_5XX = frozenset({503, 504})
# What an engine fault may answer: the documented engine errors (502 where a gateway would put
# one); never 500.
ENGINE_ERRORS = frozenset({502, 503, 504})
# How far past its timeout_ms an answer may come and still count as "within the deadline"
# (--slack-ms changes it for a run).
SLACK_MS = 50.0

Record = dict[str, Any]


def demo_query_texts() -> list[str]:
    from sidecar.demo import load_queries

    return [q["query"] for q in load_queries()]


@dataclass
class Options:
    seconds: float = 20.0  # length of each load phase
    engine: str = "opensearch"
    engine_state_dir: Path = Path("/tmp/faults-engines")
    fuzz_requests: int = 1000
    seed: int = 0
    slack_ms: float = SLACK_MS


@dataclass
class Suite:
    """The options, plus processes that several scenarios share, started on first use and
    stopped (by pid) when the suite closes."""

    options: Options
    admin_token: str = field(default_factory=lambda: secrets.token_hex(16))
    _stack: ExitStack = field(default_factory=ExitStack)
    _plain: tuple[str, int] | None = None
    _engine: EngineFront | None = None

    def plain_sidecar(self) -> tuple[str, int]:
        """(URL, pid) of a sidecar on the embedded defaults (memory cache, no watcher) with the
        admin routes on (`admin_token`)."""
        if self._plain is None:
            progress("starting the shared embedded sidecar (its own process)")
            settings = {
                "cache": {"kind": "memory"},
                "engine": {"kind": "embedded"},
                "rules": {"watch": False},
                "admin_token": self.admin_token,
            }
            self._plain = self._stack.enter_context(serving_process(settings))
            progress(f"shared sidecar pid {self._plain[1]} on {self._plain[0]}")
        return self._plain

    def engine(self) -> EngineFront:
        """The shared real engine behind a front proxy, with a sidecar searching it."""
        if self._engine is None:
            front = EngineFront(self.options.engine, self.options.engine_state_dir)
            self._stack.callback(front.close)
            front.open()
            self._engine = front
        return self._engine

    def close(self) -> None:
        self._stack.close()


# ---------------------------------------------------------------- requests and load


def read_answer(rec: Record, response: httpx.Response) -> Any:
    """Note status and the parts of a /search answer the scenarios read; return the JSON."""
    rec["status"] = response.status_code
    try:
        data = response.json()
    except ValueError:
        return {}
    if isinstance(data, dict):
        cache = data.get("cache") or {}
        rec["cache"] = cache.get("status")
        if isinstance(cache.get("misses"), int):
            rec["misses"] = cache["misses"]
        rec["rerank_status"] = data.get("rerank_status")
        if data.get("reason"):
            rec["reason"] = str(data["reason"])[:200]
        if isinstance(data.get("error"), str):
            rec["error_code"] = data["error"]
        timings = data.get("timings")
        if isinstance(timings, dict) and isinstance(timings.get("total_ms"), int | float):
            rec["total_ms"] = timings["total_ms"]  # the sidecar's own count, from its deadline
            rec["timings"] = timings
    return data


async def search_load(
    url: str,
    seconds: float,
    t0: float,
    records: list[Record],
    *,
    body_for: Callable[[str], dict[str, Any]] | None = None,
    queries: Sequence[str] | None = None,
    clients: int = CLIENTS,
    pause_on_error_s: float = 0.0,
    stop_when: Callable[[], bool] | None = None,
) -> None:
    """`clients` concurrent clients posting /search for `seconds`; one record per request (times
    in seconds since `t0`, a perf_counter reading). `body_for(query)` makes the body (default:
    the demo query, WINDOW, timeout_ms 5000). A client waits `pause_on_error_s` after an answer
    that is not 2xx, so a dead dependency does not turn the load into a busy loop. The load
    also ends early once `stop_when()` is true."""
    texts = itertools.cycle(queries or demo_query_texts())
    stop_at = time.perf_counter() + seconds

    def default_body(text: str) -> dict[str, Any]:
        return {"query": text, "window": WINDOW, "timeout_ms": 5_000}

    make = body_for or default_body

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop_at and not (stop_when and stop_when()):
            body = make(next(texts))
            start = time.perf_counter()
            rec: Record = {"t": start - t0}
            if "timeout_ms" in body:
                rec["timeout_ms"] = body["timeout_ms"]
            try:
                read_answer(rec, await client.post("/search", json=body))
            except httpx.HTTPError as exc:
                rec["status"] = 0  # no answer at all
                rec["error"] = type(exc).__name__
            end = time.perf_counter()
            rec["end"] = end - t0
            rec["ms"] = (end - start) * 1000
            records.append(rec)
            if pause_on_error_s and not 200 <= rec["status"] < 300:
                await asyncio.sleep(pause_on_error_s)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(clients)))


def timed_search(
    client: httpx.Client, body: dict[str, Any], path: str = "/search"
) -> tuple[Record, Any]:
    """One request: (its record with status and ms, the answer's JSON or {})."""
    rec: Record = {"timeout_ms": body.get("timeout_ms")}
    start = time.perf_counter()
    data: Any = {}
    try:
        data = read_answer(rec, client.post(path, json=body))
    except httpx.HTTPError as exc:
        rec["status"] = 0
        rec["error"] = type(exc).__name__
    rec["ms"] = (time.perf_counter() - start) * 1000
    return rec, data


def warm_up(url: str, rounds: int = 1) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(rounds):
            for text in demo_query_texts():
                client.post("/search", json={"query": text, "window": WINDOW})


# ---------------------------------------------------------------- summaries


def status_counts(records: Sequence[Record]) -> dict[str, int]:
    return dict(sorted(Counter(str(r["status"]) for r in records).items()))


def non_2xx(records: Sequence[Record]) -> dict[str, int]:
    counts = Counter(str(r["status"]) for r in records if not 200 <= r["status"] < 300)
    return dict(sorted(counts.items()))


def p99(records: Sequence[Record]) -> float | None:
    samples = [r["ms"] for r in records]
    return round(percentile(samples, 99), 1) if samples else None


def max_ms(records: Sequence[Record]) -> float | None:
    return round(max(r["ms"] for r in records), 1) if records else None


def late(records: Sequence[Record], slack_ms: float = SLACK_MS) -> list[Record]:
    """Answers that came later than their timeout_ms + slack."""
    return [r for r in records if r.get("timeout_ms") and r["ms"] > r["timeout_ms"] + slack_ms]


def late_by_sidecar(records: Sequence[Record], slack_ms: float = SLACK_MS) -> list[Record]:
    """Answers whose own `timings.total_ms` (the sidecar's clock, from its deadline's start)
    passed timeout_ms + slack: what the sidecar overran, apart from the transport and this
    load generator's own scheduling."""
    return [
        r
        for r in records
        if r.get("timeout_ms") and r.get("total_ms", 0) > r["timeout_ms"] + slack_ms
    ]


def recovery_s(records: Sequence[Record], since: float, good: Callable[[Record], bool]) -> Any:
    """Seconds from `since` until every later request is `good` (the first good one after the
    last bad one started); None when the last request was still bad."""
    after = sorted((r for r in records if r["t"] >= since), key=lambda r: r["t"])
    bad = [r for r in after if not good(r)]
    if not bad:
        return (after[0]["end"] - since) if after else None
    if bad[-1] is after[-1]:
        return None
    later = [r for r in after if r["t"] > bad[-1]["t"]]
    return later[0]["t"] - since if later else None


def by_phase(records: Sequence[Record], marks: dict[str, float]) -> dict[str, list[Record]]:
    """Records split at the times in `marks` (name -> start of that phase), in time order."""
    names = sorted(marks, key=lambda n: marks[n])
    phases: dict[str, list[Record]] = {name: [] for name in names}
    for rec in records:
        current = None
        for name in names:
            if rec["t"] >= marks[name]:
                current = name
        if current is not None:
            phases[current].append(rec)
    return phases


def codes(counts: dict[str, int]) -> str:
    """A status count for the table: `none` when empty."""
    return ", ".join(f"{k}: {v}" for k, v in counts.items()) if counts else "none"


def chunks(total: int, size: int = 1024 * 1024) -> Iterator[bytes]:
    """A chunked JSON body of about `total` bytes (no Content-Length)."""
    yield b'{"query": "'
    sent = 0
    while sent < total:
        yield b"a" * size
        sent += size
    yield b'"}'
