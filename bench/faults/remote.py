"""A slow remote scorer: sidecar A (`scorer.kind: remote`) scores through sidecar B's
/v1/rerank (B is the suite's shared embedded sidecar), with a delaying proxy between them.

normal: no delay; each demo query once (window 20, one at a time, timeout_ms 10000 so a busy
  machine cannot turn it into a fallback): `ok`, and A's cache holds those pairs.
slow: DELAY_S before every reply of B, longer than A's deadline. Each demo query again with
  window 40 (half its pairs cached: `partial` expected) and a new query (nothing cached:
  `fallback`), then CLIENTS clients of new queries for a while. Every answer must be a 200 with
  `rerank_status` partial or fallback and a reason (or `ok` with nothing to score: a query with
  fewer hits than its window), within timeout_ms + 50 ms; never a 500.
after: no delay again; new queries, one client, timeout_ms 5000: the time until A answers `ok`
  again.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from typing import Any

import httpx

from bench.faults.common import (
    CLIENTS,
    Record,
    Suite,
    by_phase,
    codes,
    demo_query_texts,
    late,
    late_by_sidecar,
    max_ms,
    non_2xx,
    p99,
    progress,
    read_answer,
    recovery_s,
    search_load,
    status_counts,
)
from bench.faults.proxy import Proxy
from bench.faults.report import Row, scatter_by, slow_phase, slow_phases_p99
from bench.server import serving_process

NAME = "remote"
DELAY_S = 3.0
TIMEOUT_MS = 2000
SEED_TIMEOUT_MS = 10_000
AFTER_TIMEOUT_MS = 5000


def run(suite: Suite) -> dict[str, Any]:
    peer_url, peer_pid = suite.plain_sidecar()
    proxy = Proxy(int(peer_url.rsplit(":", 1)[1]))
    phase_s = max(5.0, suite.options.seconds / 2)
    settings = {
        "scorer": {"kind": "remote", "remote_url": proxy.url, "remote_timeout_s": 5.0},
        "cache": {"kind": "memory"},
        "engine": {"kind": "embedded"},
        "rules": {"watch": False},
    }
    records: list[Record] = []
    marks: dict[str, float] = {}
    fresh = itertools.count()

    def new_query(text: str, timeout_ms: int = TIMEOUT_MS) -> dict[str, Any]:
        # a query no earlier request asked: nothing of it is cached in A
        return {"query": f"{text} {next(fresh)}", "window": 20, "timeout_ms": timeout_ms}

    def after_query(text: str) -> dict[str, Any]:
        return new_query(text, AFTER_TIMEOUT_MS)

    try:
        progress(f"remote: starting sidecar A, scorer remote -> {proxy.url} -> B {peer_url}")
        with serving_process(settings) as (url, pid):
            progress(f"remote: A pid {pid} on {url}, B pid {peer_pid}")
            texts = demo_query_texts()

            async def main() -> None:
                t0 = time.perf_counter()
                async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                    marks["normal"] = 0.0
                    seeds = [window(q, 20, SEED_TIMEOUT_MS) for q in texts]
                    await send_all(client, t0, records, seeds, "seed", concurrency=1)
                    proxy.delay = DELAY_S
                    marks["slow"] = time.perf_counter() - t0
                    progress(f"remote: {DELAY_S} s added to every reply of B")
                    mixed = [window(q, 40) for q in texts]
                    mixed += [new_query(q) for q in texts]
                    kinds = ["half cached"] * len(texts) + ["new"] * len(texts)
                    await send_all(client, t0, records, mixed, kinds)
                await search_load(url, phase_s, t0, records, body_for=new_query)
                proxy.delay = 0.0
                marks["after"] = time.perf_counter() - t0
                progress("remote: delay removed")
                await search_load(url, phase_s / 2, t0, records, body_for=after_query, clients=1)

            asyncio.run(main())
    finally:
        proxy.stop()
    phases = by_phase(records, marks)
    slow = phases["slow"]
    statuses = Counter(str(r.get("rerank_status")) for r in slow)
    by_kind = {
        kind: dict(Counter(str(r.get("rerank_status")) for r in slow if r.get("kind") == kind))
        for kind in ("half cached", "new")
    }
    reasons = Counter(_reason_kind(r.get("reason", "")) for r in slow)
    # `ok` is right only where nothing had to be scored (a query with fewer hits than the
    # window it asked, all cached in the normal phase)
    degraded_ok = all(
        r["status"] == 200
        and (
            (r.get("rerank_status") in ("partial", "fallback") and r.get("reason"))
            or (r.get("rerank_status") == "ok" and r.get("misses") == 0)
        )
        for r in slow
    )
    recover = recovery_s(records, marks["after"], lambda r: r.get("rerank_status") == "ok")
    slack = suite.options.slack_ms
    late_slow = late(slow, slack)
    passed = (
        degraded_ok
        and not late_slow
        and not non_2xx(records)
        and by_kind["half cached"].get("partial", 0) > 0
        and recover is not None
    )
    result = {
        "delay_s": DELAY_S,
        "timeout_ms": TIMEOUT_MS,
        "requests": len(records),
        "status_counts": status_counts(records),
        "non_2xx": non_2xx(records),
        "p99_ms": {name: p99(rs) for name, rs in phases.items()},
        "max_ms": {name: max_ms(rs) for name, rs in phases.items()},
        "requests_per_phase": {name: len(rs) for name, rs in phases.items()},
        "rerank_status_normal": dict(
            Counter(str(r.get("rerank_status")) for r in phases["normal"])
        ),
        "rerank_status_slow": dict(statuses),
        "rerank_status_slow_by_kind": by_kind,
        "reasons_slow": dict(reasons),
        "late": len(late_slow),
        "slack_ms": slack,
        "late_by_sidecar_clock": len(late_by_sidecar(slow, slack)),
        "sidecar_total_ms_max_slow": round(max((r.get("total_ms", 0) for r in slow), default=0), 1),
        "marks": marks,
        "recover_s": recover,
        "passed": passed,
        "records": records,
    }
    progress(
        f"remote: slow phase {dict(statuses)} (by kind {by_kind}), p99 {result['p99_ms']['slow']} "
        f"ms, max {result['max_ms']['slow']}, {len(late_slow)} late; back to ok {recover} s after"
    )
    return result


def window(text: str, size: int, timeout_ms: int = TIMEOUT_MS) -> dict[str, Any]:
    return {"query": text, "window": size, "timeout_ms": timeout_ms}


async def send_all(
    client: httpx.AsyncClient,
    t0: float,
    records: list[Record],
    bodies: list[dict[str, Any]],
    kinds: str | list[str],
    concurrency: int = CLIENTS,
) -> None:
    """Send `bodies`, `concurrency` at a time; each record notes its kind."""
    limit = asyncio.Semaphore(concurrency)

    async def one(body: dict[str, Any], kind: str) -> None:
        async with limit:
            start = time.perf_counter()
            rec: Record = {"t": start - t0, "timeout_ms": body["timeout_ms"], "kind": kind}
            try:
                read_answer(rec, await client.post("/search", json=body))
            except httpx.HTTPError as exc:
                rec["status"] = 0
                rec["error"] = type(exc).__name__
            rec["end"] = time.perf_counter() - t0
            rec["ms"] = (time.perf_counter() - start) * 1000
            records.append(rec)

    names = [kinds] * len(bodies) if isinstance(kinds, str) else kinds
    await asyncio.gather(*(one(b, k) for b, k in zip(bodies, names, strict=True)))


def _reason_kind(reason: str) -> str:
    """A reason without its numbers, so reasons count by kind."""
    return "".join("#" if c.isdigit() else c for c in reason)[:80] or "(none)"


def rows(result: dict[str, Any]) -> list[Row]:
    slow = result["rerank_status_slow"]
    return [
        Row(
            f"remote scorer (+{result['delay_s']} s)",
            str(result["requests"]),
            codes(result["non_2xx"]),
            slow_phases_p99(result),
            f"slow: {slow.get('partial', 0)} partial, {slow.get('fallback', 0)} fallback, "
            f"{slow.get('ok', 0)} ok; {result['late']} later than {result['timeout_ms']}+"
            f"{result['slack_ms']:g} ms ({result['late_by_sidecar_clock']} by the sidecar's "
            f"clock, max {result['sidecar_total_ms_max_slow']}); ok again "
            + ("never" if result["recover_s"] is None else f"{result['recover_s']:.2f} s after"),
            result["passed"],
        )
    ]


def panel(ax: Any, result: dict[str, Any]) -> None:
    colours = {"ok": "#2f6fde", "partial": "#e8a33d", "fallback": "#d9534f"}
    scatter_by(ax, result["records"], lambda r: str(r.get("rerank_status")), colours)
    slow_phase(ax, result, "peer")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("A's /search ms")
    ax.set_title(f"remote scorer's peer {result['delay_s']} s slow")
    ax.legend(fontsize=7)
