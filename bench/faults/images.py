"""Slow and dead image hosts, against a sidecar whose scorer reads images: `scorer.kind:
lychee` on the tiny random Qwen2.5-VL the tests build (tests/fixtures/tiny_qwen.py; random
weights, so the scores mean nothing, but every image goes through the real fetch, guard, decode
and processor path), on the CPU.

The embedded engine reads a catalog written here: demo products in groups, each group's titles
starting with a marker word (`slowhost`, ...) and its image URLs on one kind of host, so a
search for the marker gets exactly that group as its window. `images.allow_hosts` has
127.0.0.1, so the address guard lets the local hosts through. The hosts:

  ok       a local HTTP server serving the demo images          -> read, no flags
  slow     the same server, sleeping 5 s before it answers       -> cut at the deadline
  drip     headers at once, then one byte every 0.2 s            -> cut at the deadline
  refused  a port bound but not listening (connection refused)   -> failed at once, remembered
  hang     a port that accepts and never answers                 -> cut at the deadline
  hang2    the same, first asked with timeout_ms 8000, so the host's own read timeout (3 s)
           fires before the deadline and the failure is remembered

Each group is searched twice with timeout_ms 2000 (hang2: 8000, then 2000): every answer must be
a 200 within timeout_ms + 50 ms, the hits of a bad host flagged `image_failed: ...`, and for a
remembered failure the second search's image stage takes about nothing (the negative cache).
Then CLIENTS clients search the bad groups for a while (the deadline under load).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from bench.faults.common import (
    CLIENTS,
    Record,
    Suite,
    codes,
    late,
    late_by_sidecar,
    max_ms,
    non_2xx,
    p99,
    progress,
    search_load,
    status_counts,
    timed_search,
)
from bench.faults.report import Row
from bench.server import serving_process

NAME = "images"
TIMEOUT_MS = 2000
LONG_TIMEOUT_MS = 8000
PER_GROUP = 8
SLOW_S = 5.0
DRIP_S = 0.2
MARKERS = {
    "ok": "okhost",
    "slow": "slowhost",
    "drip": "driphost",
    "refused": "refusedhost",
    "hang": "hanghost",
    "hang2": "hangtwohost",
}
# Rules without a drop: the tiny model's random scores must not hide hits whose flags we read.
RULES = "version: 1\nblend: {model_weight: 0.8, engine_weight: 0.2, engine_normalization: minmax}\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog (5) drops the SYNs of a window's worth of parallel fetches, and a
    # dropped SYN is retried after 1 s: an "ok" host would look slow.
    request_queue_size = 128


class ImageHost:
    """One ThreadingHTTPServer on a free port: /ok/<name> serves a demo image, /slow/<name>
    sleeps SLOW_S first, /drip/<name> sends the headers and then one byte every DRIP_S."""

    def __init__(self, images: Path) -> None:
        stopped = threading.Event()
        self.stopped = stopped

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                kind, _, name = self.path.lstrip("/").partition("/")
                path = images / Path(name).name
                if kind not in ("ok", "slow", "drip") or not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                if kind == "slow":
                    stopped.wait(SLOW_S)
                self.send_response(200)
                self.send_header("content-type", "image/png")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                try:
                    if kind == "drip":
                        for i in range(len(data)):
                            if stopped.wait(DRIP_S):
                                return
                            self.wfile.write(data[i : i + 1])
                            self.wfile.flush()
                    else:
                        self.wfile.write(data)
                except OSError:  # the sidecar gave up on it
                    pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()


class DeadHosts:
    """`refused_port`: bound, never listening (connect is refused); `hang_port`: accepts every
    connection and never reads or answers."""

    def __init__(self) -> None:
        self._refusing = socket.socket()
        self._refusing.bind(("127.0.0.1", 0))
        self.refused_port = int(self._refusing.getsockname()[1])
        self._hanging = socket.socket()
        self._hanging.bind(("127.0.0.1", 0))
        self._hanging.listen(256)
        self.hang_port = int(self._hanging.getsockname()[1])
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._hanging.accept()
            except OSError:
                return
            self._held.append(conn)

    def stop(self) -> None:
        for sock in [self._refusing, self._hanging, *self._held]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def write_catalog(folder: Path, host: ImageHost, dead: DeadHosts) -> Path:
    from sidecar.demo import load_catalog

    bases = {
        "ok": f"http://127.0.0.1:{host.port}/ok/",
        "slow": f"http://127.0.0.1:{host.port}/slow/",
        "drip": f"http://127.0.0.1:{host.port}/drip/",
        "refused": f"http://127.0.0.1:{dead.refused_port}/images/",
        "hang": f"http://127.0.0.1:{dead.hang_port}/images/",
        "hang2": f"http://127.0.0.1:{dead.hang_port}/other/",
    }
    products = load_catalog()
    lines = []
    for g, (group, marker) in enumerate(MARKERS.items()):
        for product in products[g * PER_GROUP : (g + 1) * PER_GROUP]:
            name = Path(str(product["image_url"])).name
            lines.append(
                json.dumps(
                    {
                        **product,
                        "id": f"{group}-{product['id']}",
                        "title": f"{marker} {product['title']}",
                        "image_url": bases[group] + name,
                    }
                )
            )
    path = folder / "catalog.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def image_flags(data: Any) -> list[list[str]]:
    hits = data.get("hits") if isinstance(data, dict) else None
    return [list(h.get("flags") or []) for h in hits or []]


def run(suite: Suite) -> dict[str, Any]:
    try:
        from tests.fixtures.tiny_qwen import build_tiny_qwen
    except ImportError as exc:
        return {"skipped": f"cannot build the tiny Qwen2.5-VL: {exc}"}
    from sidecar.demo import DEMO_DIR

    folder = Path(tempfile.mkdtemp(prefix="faults-images-"))
    host = ImageHost(DEMO_DIR / "images")
    dead = DeadHosts()
    searches: list[dict[str, Any]] = []
    load: list[Record] = []
    try:
        progress("images: building the tiny Qwen2.5-VL (random weights) for scorer.kind lychee")
        model = build_tiny_qwen(folder / "tiny-qwen")
        (folder / "rules.yaml").write_text(RULES, encoding="utf-8")
        settings = {
            "scorer": {"kind": "lychee", "model_path": str(model), "max_pixels": 64 * 28 * 28},
            "images": {"allow_hosts": ["127.0.0.1"]},
            "engine": {"kind": "embedded", "catalog": str(write_catalog(folder, host, dead))},
            "cache": {"kind": "memory"},
            "rules": {"path": str(folder / "rules.yaml"), "watch": False},
        }
        progress(
            f"images: hosts ok/slow/drip on :{host.port}, refused :{dead.refused_port}, "
            f"hang :{dead.hang_port}; starting the lychee sidecar"
        )
        with serving_process(settings) as (url, pid):
            progress(f"images: sidecar pid {pid} on {url}")
            with httpx.Client(base_url=url, timeout=60) as client:
                for group, marker in MARKERS.items():
                    first = LONG_TIMEOUT_MS if group == "hang2" else TIMEOUT_MS
                    for attempt, timeout_ms in enumerate((first, TIMEOUT_MS), start=1):
                        searches.append(search_group(client, group, marker, attempt, timeout_ms))
            bad = [MARKERS[g] for g in ("slow", "drip", "hang", "refused")]
            seconds = max(5.0, suite.options.seconds / 2)
            progress(f"images: {CLIENTS} clients searching the bad hosts for {seconds:.0f} s")

            def body(text: str) -> dict[str, Any]:
                return {
                    "query": text,
                    "window": PER_GROUP,
                    "size": PER_GROUP,
                    "timeout_ms": TIMEOUT_MS,
                }

            async def main() -> None:
                await search_load(
                    url, seconds, time.perf_counter(), load, body_for=body, queries=bad
                )

            asyncio.run(main())
    finally:
        host.stop()
        dead.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return summarize(searches, load, suite.options.slack_ms)


def search_group(
    client: httpx.Client, group: str, marker: str, attempt: int, timeout_ms: int
) -> dict[str, Any]:
    body = {"query": marker, "window": PER_GROUP, "size": PER_GROUP, "timeout_ms": timeout_ms}
    rec, data = timed_search(client, body)
    flags = image_flags(data)
    failed = [f for fs in flags for f in fs if f.startswith("image_failed")]
    timings = data.get("timings", {}) if isinstance(data, dict) else {}
    out = {
        **rec,
        "group": group,
        "attempt": attempt,
        "hits": len(flags),
        "flagged": sum(1 for fs in flags if any(f.startswith("image_failed") for f in fs)),
        "remembered": sum(1 for f in failed if f.endswith("(remembered)")),
        "reasons": dict(Counter(f.removeprefix("image_failed: ") for f in failed)),
        "images_ms": timings.get("images_ms"),
        "images_budget_ms": timings.get("images_budget_ms"),
    }
    progress(
        f"images: {group} #{attempt} (timeout_ms {timeout_ms}): {rec['status']} in "
        f"{rec['ms']:.0f} ms, {out['flagged']}/{out['hits']} flagged, images {out['images_ms']} ms "
        f"(budget {out['images_budget_ms']}), {out['reasons']}"
    )
    return out


def summarize(
    searches: list[dict[str, Any]], load: list[Record], slack_ms: float
) -> dict[str, Any]:
    def one(group: str, attempt: int) -> dict[str, Any]:
        return next(s for s in searches if s["group"] == group and s["attempt"] == attempt)

    checks: dict[str, bool] = {
        "all 200": all(s["status"] == 200 for s in searches + load),
        f"within timeout_ms + {slack_ms:g}": not late(searches, slack_ms)
        and not late(load, slack_ms),
        "ok host: images read, no flags": all(
            one("ok", a)["flagged"] == 0 and one("ok", a)["hits"] == PER_GROUP for a in (1, 2)
        ),
        "bad hosts: every hit flagged": all(
            s["flagged"] == s["hits"] == PER_GROUP for s in searches if s["group"] != "ok"
        ),
        "refused: remembered, 2nd fast": one("refused", 2)["remembered"] == PER_GROUP
        and (one("refused", 2)["images_ms"] or 0) < 50,
        "hang2: remembered, 2nd fast": one("hang2", 2)["remembered"] == PER_GROUP
        and (one("hang2", 2)["images_ms"] or 0) < 50,
    }
    # Not a pass/fail check: with the default image timeouts (connect 2 s, read 3 s) a host that
    # never answers within a 2000 ms request is cut by the deadline, which is not remembered.
    hang_second = one("hang", 2)
    return {
        "timeout_ms": TIMEOUT_MS,
        "requests": len(searches) + len(load),
        "status_counts": status_counts(searches + load),
        "non_2xx": non_2xx(searches + load),
        "searches": searches,
        "p99_ms": {"searches": p99(searches), "load": p99(load)},
        "max_ms": {"searches": max_ms(searches), "load": max_ms(load)},
        "load_rerank_status": dict(Counter(str(r.get("rerank_status")) for r in load)),
        "hang_deadline_remembered": hang_second["remembered"] > 0,
        "slack_ms": slack_ms,
        "late": len(late(searches, slack_ms) + late(load, slack_ms)),
        "late_by_sidecar_clock": len(
            late_by_sidecar(searches, slack_ms) + late_by_sidecar(load, slack_ms)
        ),
        "checks": checks,
        "passed": all(checks.values()),
        "records": load,
    }


def rows(result: dict[str, Any]) -> list[Row]:
    by = {(s["group"], s["attempt"]): s for s in result["searches"]}
    failed = [name for name, ok in result["checks"].items() if not ok]
    out = [
        Row(
            "image hosts (lychee)",
            str(result["requests"]),
            codes(non_2xx(result["searches"])),
            f"searches {result['p99_ms']['searches']} (max {result['max_ms']['searches']}), "
            f"load {result['p99_ms']['load']} (max {result['max_ms']['load']})",
            ("all checks pass" if not failed else "FAILED: " + "; ".join(failed))
            + f"; {result['late']} later than timeout_ms+{result['slack_ms']:g} "
            f"({result['late_by_sidecar_clock']} by the sidecar's clock)",
            result["passed"],
        )
    ]
    for group in MARKERS:
        first, second = by[(group, 1)], by[(group, 2)]
        out.append(
            Row(
                f"  {group} host",
                "2",
                codes(non_2xx([first, second])),
                f"1st {first['ms']:.0f} (to {first['timeout_ms']}), 2nd {second['ms']:.0f}",
                f"flagged {first['flagged']}/{first['hits']}, {second['flagged']}/{second['hits']};"
                f" images {first['images_ms']:.0f} -> {second['images_ms']:.0f} ms"
                + (f", remembered {second['remembered']}" if second["remembered"] else ""),
                None,
            )
        )
    return out


def panel(ax: Any, result: dict[str, Any]) -> None:
    groups = list(MARKERS)
    by = {(s["group"], s["attempt"]): s for s in result["searches"]}
    xs = list(range(len(groups)))
    for attempt, offset, colour in ((1, -0.2, "#2f6fde"), (2, 0.2, "#e8a33d")):
        total = [by[(g, attempt)]["ms"] for g in groups]
        images = [by[(g, attempt)]["images_ms"] or 0 for g in groups]
        bars = ax.bar(
            [x + offset for x in xs], total, 0.38, color=colour, label=f"search {attempt}"
        )
        ax.bar([x + offset for x in xs], images, 0.38, color="#333333", alpha=0.35)
        ax.bar_label(bars, fmt="%.0f", fontsize=6)
    ax.bar([0], [0], color="#333333", alpha=0.35, label="of which images")
    ax.axhline(TIMEOUT_MS, color="#555555", linestyle="--", label="timeout_ms 2000")
    slack = result["slack_ms"]
    ax.axhline(TIMEOUT_MS + slack, color="#d9534f", linestyle=":", label=f"+{slack:g} ms")
    ax.set_xticks(xs, groups)
    ax.set_ylabel("/search ms")
    ax.set_title("image hosts: two searches each (hang2: 1st with 8000 ms)")
    ax.legend(fontsize=7)
