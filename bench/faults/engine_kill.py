"""The engine SIGKILLed and restarted under load: the shared real engine (bench.faults.engine)
is SIGKILLed by pid while CLIENTS clients search it through a sidecar; it stays down a while,
then is started again on its data (es_integration.engines.start: new ports, which the front
proxy follows). Reports the non-2xx by code while it is down (goal: only the documented engine
errors, 502/503/504, never a 500 and never a dropped connection) and the time until /search
answers 200 again: from the relaunch, and from the moment the engine was healthy again."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

from bench.faults.common import (
    CLIENTS,
    ENGINE_ERRORS,
    WINDOW,
    Record,
    Suite,
    by_phase,
    codes,
    non_2xx,
    p99,
    progress,
    recovery_s,
    search_load,
    status_counts,
    warm_up,
)
from bench.faults.report import Row, scatter_by

NAME = "engine_kill"
TIMEOUT_MS = 2000
MAX_RESTART_S = 240.0  # the load never runs longer than this past the relaunch
# A client waits this long after an error answer: a load of instant 503s would otherwise take
# the CPU the restarting engine needs (about 30 requests a second in all while it is down).
PAUSE_ON_ERROR_S = 0.25


def body(text: str) -> dict[str, Any]:
    return {"query": text, "window": WINDOW, "timeout_ms": TIMEOUT_MS}


def run(suite: Suite) -> dict[str, Any]:
    front = suite.engine()
    url = front.sidecar_url
    seconds = suite.options.seconds
    before_s, down_s, after_s = seconds * 0.25, max(3.0, seconds * 0.25), seconds * 0.5
    progress(f"engine kill: warming up the sidecar on {front.kind}")
    warm_up(url)
    records: list[Record] = []
    marks: dict[str, float] = {"before": 0.0}
    restarted = threading.Event()
    engine_states: dict[str, Any] = {"first": dict(front.state)}

    async def faults(t0: float) -> None:
        await asyncio.sleep(before_s)
        pid = front.state["pid"]
        marks["engine down"] = time.perf_counter() - t0
        await asyncio.to_thread(front.kill)
        progress(f"engine kill: SIGKILLed {front.kind} pid {pid} at t={marks['engine down']:.1f}s")
        await asyncio.sleep(down_s)
        marks["relaunch"] = time.perf_counter() - t0
        progress(f"engine kill: relaunching {front.kind} at t={marks['relaunch']:.1f}s")
        try:
            engine_states["second"] = await asyncio.to_thread(front.restart)
        finally:
            marks["engine healthy"] = time.perf_counter() - t0
            restarted.set()
        progress(
            f"engine kill: {front.kind} healthy again at t={marks['engine healthy']:.1f}s "
            f"(pid {front.state['pid']}, {front.state['url']}, start-up "
            f"{front.state['startup_s']} s)"
        )

    async def main() -> None:
        t0 = time.perf_counter()
        total = before_s + down_s + MAX_RESTART_S
        healthy_at: list[float] = []

        def done() -> bool:
            if not restarted.is_set():
                return False
            if not healthy_at:
                healthy_at.append(time.perf_counter())
            return time.perf_counter() - healthy_at[0] >= after_s

        await asyncio.gather(
            search_load(
                url,
                total,
                t0,
                records,
                body_for=body,
                pause_on_error_s=PAUSE_ON_ERROR_S,
                stop_when=done,
            ),
            faults(t0),
        )

    progress(f"engine kill: {CLIENTS} clients of /search, timeout_ms {TIMEOUT_MS}")
    asyncio.run(main())
    phases = by_phase(records, marks)
    kill, healthy = marks["engine down"], marks["engine healthy"]
    # by when they ended: a request in flight at the kill is one the kill answered
    before = [r for r in records if r["end"] < kill]
    down = [r for r in records if r["end"] >= kill and r["t"] < healthy]
    errors = Counter(str(r.get("error_code")) for r in down if r["status"] >= 300)
    undocumented = {k: v for k, v in non_2xx(down).items() if int(k) not in ENGINE_ERRORS}
    healthy = marks["engine healthy"]
    from_launch = next(
        (
            r["end"] - marks["relaunch"]
            for r in sorted(records, key=lambda r: r["t"])
            if r["t"] >= marks["relaunch"] and r["status"] == 200
        ),
        None,
    )
    recover = recovery_s(records, healthy, lambda r: r["status"] == 200)
    passed = (
        not undocumented
        and not non_2xx(before)
        and "second" in engine_states
        and recover is not None
        and bool(down)
    )
    result = {
        "engine": front.kind,
        "timeout_ms": TIMEOUT_MS,
        "requests": len(records),
        "status_counts": status_counts(records),
        "non_2xx": non_2xx(records),
        "non_2xx_while_down": non_2xx(down),
        "error_codes_while_down": dict(errors),
        "undocumented_while_down": undocumented,
        "p99_ms": {name: p99(rs) for name, rs in phases.items()},
        "requests_per_phase": {name: len(rs) for name, rs in phases.items()},
        "marks": marks,
        "engine_states": engine_states,
        "restart_startup_s": engine_states.get("second", {}).get("startup_s"),
        "first_200_after_relaunch_s": from_launch,
        "recover_s": recover,
        "passed": passed,
        "records": records,
    }
    progress(
        f"engine kill: while down {result['non_2xx_while_down']} {dict(errors)}; first 200 "
        f"{_s(from_launch)} after the relaunch, every request 200 {_s(recover)} after healthy"
    )
    return result


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.2f} s"


def rows(result: dict[str, Any]) -> list[Row]:
    p = result["p99_ms"]
    rec = result["recover_s"]
    launch = result["first_200_after_relaunch_s"]
    check = (
        "not recovered"
        if rec is None
        else f"200 again {launch:.1f} s after relaunch (engine start-up "
        f"{result['restart_startup_s']} s), all 200 {rec:.2f} s after healthy"
    )
    return [
        Row(
            f"{result['engine']} SIGKILL/restart",
            str(result["requests"]),
            "while down " + codes(result["non_2xx_while_down"]),
            ", ".join(f"{k} {v}" for k, v in p.items()),
            check,
            result["passed"],
        )
    ]


def panel(ax: Any, result: dict[str, Any]) -> None:
    colours = {200: "#2f6fde", 503: "#e8a33d", 504: "#9b59b6", 502: "#8e6c3a"}
    scatter_by(
        ax,
        result["records"],
        lambda r: r["status"],
        colours,
        default="#d9534f",
        size=5,
        label=lambda status: str(status or "no answer"),
    )
    marks = result["marks"]
    ax.axvline(marks["engine down"], color="#d9534f", linestyle="--", label="SIGKILL")
    ax.axvline(marks["relaunch"], color="#555555", linestyle="--", label="relaunch")
    ax.axvline(marks["engine healthy"], color="#2a9d4b", linestyle="--", label="engine healthy")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since load start")
    ax.set_ylabel("/search ms (log)")
    ax.set_title(f"{result['engine']} SIGKILL and restart ({CLIENTS} clients)")
    ax.legend(fontsize=7)
