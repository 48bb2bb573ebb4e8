"""Redis SIGKILLed and restarted under load.

A real `redis-server` on a free port backs the sidecar's pair cache (the sidecar in its own
process, breaker cooldown 1 s); under a steady /search load redis is SIGKILLed at a quarter of
the phase, then restarted on the same port at half. Reports p99 latency before / while redis is
down / after it returns, non-2xx by code, and the time from the restart until every later
request says `cache.status: ok`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.faults.common import (
    CLIENTS,
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
from bench.server import free_port, serving_process

NAME = "redis"


class Redis:
    """A `redis-server` on 127.0.0.1:`port`, no persistence; started and killed by pid."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port = port
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; see {self.folder / 'redis.log'}")
            time.sleep(0.05)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, by pid: no shutdown, connections dropped mid-flight."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.proc = None


def run(suite: Suite) -> dict[str, Any]:
    if shutil.which("redis-server") is None:
        return {"skipped": "redis-server is not on PATH (apt-get install redis-server)"}
    seconds = suite.options.seconds
    folder = Path(tempfile.mkdtemp(prefix="faults-redis-"))
    redis = Redis(free_port(), folder)
    kill_at, restart_at = seconds * 0.25, seconds * 0.5
    records: list[Record] = []
    events: dict[str, float] = {}
    progress(f"redis: starting redis-server on 127.0.0.1:{redis.port}")
    redis.start()
    settings = {
        "cache": {
            "kind": "redis",
            "redis_url": f"redis://127.0.0.1:{redis.port}/0",
            "breaker_cooldown_s": 1,
        },
        "engine": {"kind": "embedded"},
        "rules": {"watch": False},
    }
    try:
        progress("redis: starting the sidecar (its own process) and waiting for ready")
        with serving_process(settings) as (url, pid):
            progress(f"redis: sidecar pid {pid} on {url}; warming up")
            warm_up(url)

            async def faults(t0: float) -> None:
                await asyncio.sleep(kill_at)
                redis.kill()
                events["kill"] = time.perf_counter() - t0
                progress(f"redis: SIGKILLed redis at t={events['kill']:.1f}s")
                await asyncio.sleep(max(0.0, restart_at - (time.perf_counter() - t0)))
                await asyncio.to_thread(redis.start)
                events["restart"] = time.perf_counter() - t0
                progress(f"redis: restarted redis on the same port at t={events['restart']:.1f}s")

            async def main() -> None:
                t0 = time.perf_counter()
                await asyncio.gather(search_load(url, seconds, t0, records), faults(t0))

            progress(f"redis: {CLIENTS} clients of /search for {seconds:.0f}s")
            asyncio.run(main())
    finally:
        redis.stop()
        shutil.rmtree(folder, ignore_errors=True)
    kill, restart = events["kill"], events["restart"]
    phases = by_phase(records, {"before": 0.0, "redis down": kill, "after return": restart})
    recover = recovery_s(records, restart, lambda r: r.get("cache") == "ok")
    result = {
        "requests": len(records),
        "non_2xx": non_2xx(records),
        "status_counts": status_counts(records),
        "p99_ms": {name: p99(rs) for name, rs in phases.items()},
        "requests_per_phase": {name: len(rs) for name, rs in phases.items()},
        "kill_s": kill,
        "restart_s": restart,
        "recover_s": recover,
        "cache_status_counts": dict(Counter(str(r.get("cache")) for r in records)),
        "rerank_status_counts": dict(Counter(str(r.get("rerank_status")) for r in records)),
        "passed": not non_2xx(records) and recover is not None,
        "records": records,
    }
    rec_text = "never (within the window)" if recover is None else f"{recover:.2f}s"
    progress(f"redis: {len(records)} requests, non-2xx {result['non_2xx']}, recovered {rec_text}")
    return result


def rows(result: dict[str, Any]) -> list[Row]:
    rec = result["recover_s"]
    return [
        Row(
            "redis kill/restart",
            str(result["requests"]),
            codes(result["non_2xx"]),
            ", ".join(f"{k} {v}" for k, v in result["p99_ms"].items()),
            "cache not back" if rec is None else f"cache ok {rec:.2f} s after restart",
            result["passed"],
        )
    ]


def panel(ax: Any, result: dict[str, Any]) -> None:
    colours = {"ok": "#2f6fde", "unavailable": "#d9534f"}
    scatter_by(
        ax,
        result["records"],
        lambda r: str(r.get("cache")),
        colours,
        size=5,
        label=lambda status: f"cache.status {status}",
    )
    ax.axvline(result["kill_s"], color="#d9534f", linestyle="--", label="redis SIGKILL")
    ax.axvline(result["restart_s"], color="#2a9d4b", linestyle="--", label="redis restart")
    if result["recover_s"] is not None:
        ax.axvline(
            result["restart_s"] + result["recover_s"],
            color="#2a9d4b",
            linestyle=":",
            label="every later request ok",
        )
    ax.set_yscale("log")
    ax.set_xlabel("seconds since load start")
    ax.set_ylabel("/search ms (log)")
    ax.set_title(f"redis SIGKILL and restart ({CLIENTS} clients)")
    ax.legend(fontsize=7)
