"""vLLM under faults: a sidecar with `scorer.kind: vllm` (score cache off, so every request needs
the model) scores through a delaying proxy in front of vLLM's CPU build serving a tiny
Lychee-shaped model by the `rerank-sidecar vllm-args` recipe, under LOAD_CLIENTS clients of new
queries (window 20, timeout_ms 5000). Two clients, not the suite's eight, and 5 s, not 2: on 2
shared cores vLLM and the sidecar at eight clients take longer than 2 s with no fault at all
(the breaker then opens on timeouts), and at two clients a request now and then still took
2 s while other work ran: capacity, not the fault behaviour measured here.

seed: a few requests one at a time, timeout_ms 10000, until one is `ok` (vLLM's first batches
  compile), not counted.
normal: no fault: `ok`.
slow: DELAY_S before every reply of vLLM, longer than the deadline: every answer a 200 with
  `fallback` (or `partial`) and a reason, within timeout_ms + 50 ms.
after: the delay removed: the time until the answers are `ok` again (the breaker's cooldown).
killed: vLLM's process group is SIGKILLed, and restarted at once on the same port (ready in
  about 40-90 s here); the load goes on (one client once the first phase_s have passed, so
  the restart is not starved of the 2 cores): every answer a 200 `fallback` within
  timeout_ms + 50 ms.
back: from vLLM's /health answering again: the time until the sidecar, never restarted, answers
  `ok` again.

Skipped with the reason when vLLM's CPU environment is not installed (python -m model_servers
install).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.faults.common import (
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
    recovery_s,
    search_load,
    status_counts,
)
from bench.faults.proxy import Proxy
from bench.faults.report import Row, scatter_by
from bench.server import serving_process

NAME = "vllm"
DELAY_S = 6.0  # longer than the deadline
TIMEOUT_MS = 5000
LOAD_CLIENTS = 2
SERVER = "faults-vllm"
PHASES = ("normal", "slow", "after", "killed", "back")


def unavailable() -> str | None:
    from bench.model_tier import vllm_unavailable

    return vllm_unavailable()


def run(suite: Suite) -> dict[str, Any]:
    reason = unavailable()
    if reason:
        progress(f"vllm: skipped: {reason}")
        return {"skipped": reason}
    from bench.model_tier import recipe_args
    from model_servers import vllm_cpu
    from tests.fixtures.tiny_qwen import build_tiny_qwen

    phase_s = max(5.0, suite.options.seconds / 2)
    records: list[Record] = []
    marks: dict[str, float] = {}
    fresh = itertools.count()
    folder = Path(tempfile.mkdtemp(prefix="faults-vllm-"))
    state = folder / "state"
    model = build_tiny_qwen(folder / "tiny-lychee", head_dim=32)
    args = recipe_args(model)
    progress("vllm: starting vLLM (about 40-120 s here)")
    info = vllm_cpu.start(str(model), args, name=SERVER, state_dir=state)
    port = int(str(info["url"]).rsplit(":", 1)[1])
    proxy = Proxy(port)
    restart: dict[str, Any] = {}

    def body(text: str) -> dict[str, Any]:
        return {"query": f"{text} {next(fresh)}", "window": 20, "timeout_ms": TIMEOUT_MS}

    def kill_and_restart(t0: float) -> None:
        pid = int(str(info["pid"]))
        os.killpg(pid, signal.SIGKILL)  # its own process group: server and engine core
        vllm_cpu.stop(SERVER, state)  # reaps it and forgets its state
        began = time.perf_counter()
        try:
            vllm_cpu.start(str(model), args, name=SERVER, state_dir=state, port=port)
            restart["ready_s"] = round(time.perf_counter() - began, 1)
        except Exception as exc:  # reported in the row, not lost in a thread
            restart["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        marks["back"] = time.perf_counter() - t0

    settings = {
        "scorer": {"kind": "vllm", "url": proxy.url, "model": str(info["served_model_name"])},
        "cache": {"kind": "none"},
        "engine": {"kind": "embedded"},
        "rules": {"watch": False},
    }
    try:
        progress(
            f"vllm: vLLM on {info['url']} (ready in {info.get('ready_s')} s), proxy {proxy.url}"
        )
        with serving_process(settings) as (url, pid):
            progress(f"vllm: sidecar pid {pid} on {url}")
            texts = demo_query_texts()
            load: dict[str, Any] = {"body_for": body, "queries": texts, "clients": LOAD_CLIENTS}

            async def main() -> None:
                seed(url)
                t0 = time.perf_counter()
                marks["normal"] = 0.0
                await search_load(url, phase_s, t0, records, **load)
                proxy.delay = DELAY_S
                marks["slow"] = time.perf_counter() - t0
                progress(f"vllm: {DELAY_S} s added to every reply of vLLM")
                await search_load(url, phase_s, t0, records, **load)
                proxy.delay = 0.0
                marks["after"] = time.perf_counter() - t0
                progress("vllm: delay removed")
                await search_load(url, phase_s, t0, records, **load)
                marks["killed"] = time.perf_counter() - t0
                progress("vllm: vLLM killed (SIGKILL), restarting on the same port")
                worker = threading.Thread(target=kill_and_restart, args=(t0,), daemon=True)
                worker.start()
                await search_load(url, phase_s, t0, records, **load)
                await search_load(
                    url,
                    600.0,
                    t0,
                    records,
                    body_for=body,
                    queries=texts,
                    clients=1,
                    stop_when=lambda: not worker.is_alive(),
                )
                progress(f"vllm: restart done {restart}")
                await search_load(url, phase_s, t0, records, **load)

            asyncio.run(main())
    finally:
        proxy.stop()
        vllm_cpu.stop(SERVER, state)
    return summarize(records, marks, restart, suite.options.slack_ms)


def seed(url: str, tries: int = 10) -> None:
    """One request at a time, with a long deadline, until vLLM has answered one `ok`."""
    with httpx.Client(base_url=url, timeout=30) as client:
        for n in range(tries):
            body = {"query": f"seed {n}", "window": 20, "timeout_ms": 10_000}
            if client.post("/search", json=body).json().get("rerank_status") == "ok":
                return
            time.sleep(1.0)
    progress(f"vllm: no `ok` answer in {tries} seed requests")


def summarize(
    records: list[Record], marks: dict[str, float], restart: dict[str, Any], slack: float
) -> dict[str, Any]:
    phases = by_phase(records, marks)

    def statuses(rs: list[Record]) -> dict[str, int]:
        return dict(Counter(str(r.get("rerank_status")) for r in rs))

    def degraded(r: Record) -> bool:
        return r["status"] == 200 and (
            (r.get("rerank_status") in ("partial", "fallback") and bool(r.get("reason")))
            or (r.get("rerank_status") == "ok" and r.get("misses") == 0)
        )

    def is_ok(r: Record) -> bool:
        return r.get("rerank_status") == "ok"

    # the first requests of a slow or killed phase may have been scored before the fault hit
    slow_bad = [r for r in phases.get("slow", []) if not degraded(r) and not is_ok(r)]
    killed_bad = [r for r in phases.get("killed", []) if not degraded(r) and not is_ok(r)]
    late_all = late(records, slack)
    recover_slow = recovery_s(
        [r for r in records if r["t"] < marks.get("killed", float("inf"))], marks["after"], is_ok
    )
    recover_back = recovery_s(records, marks["back"], is_ok) if "back" in marks else None
    passed = (
        not non_2xx(records)
        and not late_all
        and not slow_bad
        and not killed_bad
        and statuses(phases["normal"]).get("ok", 0) > 0
        and recover_slow is not None
        and recover_back is not None
        and "error" not in restart
    )
    result = {
        "delay_s": DELAY_S,
        "timeout_ms": TIMEOUT_MS,
        "slack_ms": slack,
        "requests": len(records),
        "status_counts": status_counts(records),
        "non_2xx": non_2xx(records),
        "p99_ms": {name: p99(rs) for name, rs in phases.items()},
        "max_ms": {name: max_ms(rs) for name, rs in phases.items()},
        "requests_per_phase": {name: len(rs) for name, rs in phases.items()},
        "rerank_status_by_phase": {name: statuses(rs) for name, rs in phases.items()},
        "not_degraded": len(slow_bad) + len(killed_bad),
        "late": len(late_all),
        "late_by_sidecar_clock": len(late_by_sidecar(records, slack)),
        "restart": restart,
        "marks": marks,
        "recover_after_slow_s": recover_slow,
        "recover_after_restart_s": recover_back,
        "passed": passed,
        "records": records,
    }
    progress(
        f"vllm: by phase {result['rerank_status_by_phase']}, p99 {result['p99_ms']}, "
        f"{len(late_all)} late; ok again {recover_slow} s after the delay went, "
        f"{recover_back} s after vLLM was back"
    )
    return result


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def rows(result: dict[str, Any]) -> list[Row]:
    by = result["rerank_status_by_phase"]
    p = result["p99_ms"]
    return [
        Row(
            f"vllm scorer (+{result['delay_s']:g} s, killed)",
            str(result["requests"]),
            codes(result["non_2xx"]),
            ", ".join(f"{name} {p.get(name)}" for name in PHASES if name in p),
            f"slow: {by.get('slow', {}).get('fallback', 0)} fallback; killed: "
            f"{by.get('killed', {}).get('fallback', 0)} fallback; {result['late']} later than "
            f"{result['timeout_ms']}+{result['slack_ms']:g} ms; ok again "
            f"{_seconds(result['recover_after_slow_s'])} after the delay, "
            f"{_seconds(result['recover_after_restart_s'])} after vLLM's restart "
            f"(ready in {result['restart'].get('ready_s', '?')} s), no sidecar restart",
            result["passed"],
        )
    ]


def panel(ax: Any, result: dict[str, Any]) -> None:
    colours = {"ok": "#2f6fde", "partial": "#e8a33d", "fallback": "#d9534f"}
    scatter_by(ax, result["records"], lambda r: str(r.get("rerank_status")), colours)
    marks = result["marks"]
    ax.axvspan(marks["slow"], marks["after"], color="#e8a33d", alpha=0.12, label="vLLM slow")
    if "back" in marks:
        ax.axvspan(marks["killed"], marks["back"], color="#d9534f", alpha=0.10, label="vLLM down")
    ax.axhline(result["timeout_ms"], color="#555555", linestyle="--", label="timeout_ms")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("/search ms")
    ax.set_title(f"vLLM {result['delay_s']:g} s slow, then killed and restarted")
    ax.legend(fontsize=7)
