"""Fault suite against real local processes: `python -m bench.faults [--out DIR] [--seconds N]`.

Scenarios (each bounded by --seconds, default 20):
  1. redis: a real `redis-server` on a free port backs the sidecar's pair cache (the sidecar in
     its own process, breaker cooldown 1 s); under a steady /search load, redis is SIGKILLed,
     then restarted on the same port. Reports p99 latency before / while redis is down / after
     it returns, non-2xx by code, and the time from the restart until every later request says
     `cache.status: ok`.
  2. hostile bodies: a fixed list of malformed, oversized and odd bodies sent to /search,
     /api/rerank, /v1/rerank, /api/explain and /products/_search; counts by status (goal: no 500).
  3. rules rewrite: a sidecar watching a temporary rules file (every 0.2 s); under load the file
     is rewritten 20 times, valid edits alternating with invalid files (bad YAML, invalid UTF-8,
     wrong schema). Reports non-2xx during it, and checks that /readyz still says the watcher
     runs and that the live version is the last valid file's.
Everything this starts (redis, the sidecars) is stopped by its own pid. Results: a table on
stdout, progress on stderr, `<out>/faults.json` and `<out>/faults.png`.

One file of ~600 lines on purpose: the scenarios share the process starting, the load loop and
the per-request record; they read as one report. Slow and dead image hosts, an engine kill and a
slow remote scorer are not scenarios yet.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.search_latency import percentile
from bench.server import free_port, serving_process

RESULTS = Path(__file__).with_name("results")
CLIENTS = 8
WINDOW = 50


def progress(message: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def demo_query_texts() -> list[str]:
    from sidecar.demo import load_queries

    return [q["query"] for q in load_queries()]


# ---------------------------------------------------------------- processes


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


# ---------------------------------------------------------------- load


async def search_load(url: str, seconds: float, t0: float, records: list[dict[str, Any]]) -> None:
    """CLIENTS concurrent clients posting /search for `seconds`; one record per request (times
    in seconds since `t0`, a perf_counter reading)."""
    queries = itertools.cycle(demo_query_texts())
    stop_at = time.perf_counter() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < stop_at:
            body = {"query": next(queries), "window": WINDOW, "timeout_ms": 5_000}
            start = time.perf_counter()
            rec: dict[str, Any] = {"t": start - t0}
            try:
                r = await client.post("/search", json=body)
                rec["status"] = r.status_code
                try:
                    data = r.json()
                except ValueError:
                    data = {}
                if isinstance(data, dict):
                    rec["cache"] = (data.get("cache") or {}).get("status")
                    rec["rerank_status"] = data.get("rerank_status")
            except httpx.HTTPError as exc:
                rec["status"] = 0  # no answer at all
                rec["error"] = type(exc).__name__
            end = time.perf_counter()
            rec["end"] = end - t0
            rec["ms"] = (end - start) * 1000
            records.append(rec)

    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(CLIENTS)))


def non_2xx(records: list[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(str(r["status"]) for r in records if not 200 <= r["status"] < 300)
    return dict(sorted(counts.items()))


def p99(records: list[dict[str, Any]]) -> float | None:
    samples = [r["ms"] for r in records]
    return round(percentile(samples, 99), 1) if samples else None


def warm_up(url: str, rounds: int = 1) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(rounds):
            for text in demo_query_texts():
                client.post("/search", json={"query": text, "window": WINDOW})


# ---------------------------------------------------------------- 1. redis


def scenario_redis(seconds: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="faults-redis-"))
    redis = Redis(free_port(), folder)
    kill_at, restart_at = seconds * 0.25, seconds * 0.5
    records: list[dict[str, Any]] = []
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
    hostile: dict[str, Any] = {}
    try:
        progress("redis: starting the sidecar (its own process) and waiting for ready")
        with serving_process(settings) as (url, pid):
            progress(f"redis: sidecar pid {pid} on {url}; warming up")
            warm_up(url)
            events: dict[str, float] = {}

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
            progress("hostile: sending hostile bodies to the same sidecar")
            hostile = scenario_hostile(url, seconds)
    finally:
        redis.stop()
        shutil.rmtree(folder, ignore_errors=True)
    kill, restart = events["kill"], events["restart"]
    phases = {
        "before": [r for r in records if r["t"] < kill],
        "redis down": [r for r in records if kill <= r["t"] < restart],
        "after return": [r for r in records if r["t"] >= restart],
    }
    after = sorted(phases["after return"], key=lambda r: r["t"])
    bad = [r for r in after if r.get("cache") != "ok"]
    if not bad:
        recover: float | None = (after[0]["end"] - restart) if after else None
    elif bad[-1] is after[-1]:
        recover = None  # the last request still was not ok: never recovered in the window
    else:
        later_ok = [r for r in after if r["t"] > bad[-1]["t"]]
        recover = later_ok[0]["t"] - restart if later_ok else None
    caches = Counter(str(r.get("cache")) for r in records)
    reranks = Counter(str(r.get("rerank_status")) for r in records)
    result = {
        "requests": len(records),
        "non_2xx": non_2xx(records),
        "status_counts": dict(Counter(str(r["status"]) for r in records)),
        "p99_ms": {name: p99(rs) for name, rs in phases.items()},
        "requests_per_phase": {name: len(rs) for name, rs in phases.items()},
        "kill_s": kill,
        "restart_s": restart,
        "recover_s": recover,
        "cache_status_counts": dict(caches),
        "rerank_status_counts": dict(reranks),
        "records": records,
    }
    rec_text = "never (within the window)" if recover is None else f"{recover:.2f}s"
    progress(f"redis: {len(records)} requests, non-2xx {result['non_2xx']}, recovered {rec_text}")
    return {"redis": result, "hostile": hostile}


# ---------------------------------------------------------------- 2. hostile bodies

BIG = 25 * 1024 * 1024
S = "@S@"  # where a hostile JSON value goes in a route's template

TEMPLATES: dict[str, list[str]] = {
    "/search": [
        '{"query": @S@, "window": 20}',
        '{"query": "shoes", "window": 20, "filters": {"term": {"brand": @S@}}}',
        '{"query": "shoes", "window": 20, "filters": {"term": {@S@: "x"}}}',
        '{"query": "shoes", "window": 20, "filters": {"range": {"price": {"gte": @S@}}}}',
        '{"query": {"text": @S@}, "window": 20}',
        '{"query": "shoes", "window": @S@}',
        '{"query": "shoes", "index": @S@}',
        '{"query": "shoes", "rules": @S@}',
        '{"query": "shoes", "raw_query": {"match": {"title": @S@}}}',
    ],
    "/api/rerank": [
        '{"query": @S@, "documents": ["red running shoes", "a kettle"]}',
        '{"query": "shoes", "documents": ["red running shoes", @S@]}',
        '{"query": "shoes", "documents": [{"text": @S@}]}',
        '{"query": "shoes", "documents": ["a"], "top_n": @S@}',
    ],
    "/v1/rerank": [
        '{"query": @S@, "documents": ["red running shoes", "a kettle"]}',
        '{"query": "shoes", "documents": ["red running shoes", @S@]}',
        '{"query": "shoes", "model": @S@, "documents": ["a"]}',
        '{"query": "shoes", "documents": ["a"], "top_n": @S@}',
    ],
    "/api/explain": [
        '{"query": @S@, "product": {"title": "Red running shoes, light"}}',
        '{"query": "shoes", "product": {"title": @S@}}',
        '{"query": "shoes", "product": {"title": "Red shoes", "selling_points": @S@}}',
    ],
    "/products/_search": [
        '{"query": {"match": {"title": @S@}}}',
        '{"query": {"multi_match": {"query": @S@, "fields": ["title"]}}}',
        '{"query": {"term": {@S@: "x"}}}',
        '{"query": {"match": {"title": "shoes"}}, "size": @S@}',
        '{"query": {"match": {"title": "shoes"}}, "from": @S@}',
    ],
}

DEEP = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
HUGE_INT = b"9" * 5_000  # past Python's int-string digit limit (4300)

VALUES: dict[str, bytes] = {
    "lone surrogate \\ud800": b'"\\ud800"',
    "lone low surrogate \\udfff": b'"x \\udfff y"',
    "escaped NUL \\u0000": b'"a\\u0000b"',
    "raw NUL byte": b'"a\x00b"',
    "invalid UTF-8 bytes": b'"\xff\xfe\xc3("',
    "overlong UTF-8": b'"\xc0\xaf"',
    "number": b"123",
    "negative number": b"-1",
    "float": b"1.5",
    "bool": b"true",
    "null": b"null",
    "list": b'[1, [2, "x"]]',
    "object": b'{"x": {"y": 1}}',
    "nested 10k": DEEP,
    "1e999 (inf)": b"1e999",
    "NaN literal": b"NaN",
    "Infinity literal": b"-Infinity",
    "huge int 5000 digits": HUGE_INT,
    "long string 1 MB": b'"' + b"a" * (1024 * 1024) + b'"',
}

WHOLE: dict[str, bytes] = {
    "empty body": b"",
    "null body": b"null",
    "list body": b"[]",
    "string body": b'"shoes"',
    "truncated JSON": b'{"query": "sho',
    "invalid UTF-8 body": b"\xff\xfe\xfd",
    "nested 10k arrays body": DEEP,
    "nested 10k objects body": DEEP_OBJECT,
    "UTF-16 body": '{"query": "shoes"}'.encode("utf-16"),
    "BOM + JSON": b'\xef\xbb\xbf{"query": "shoes"}',
    "duplicate keys": b'{"query": "a", "query": 1}',
}


def _chunks(total: int, size: int = 1024 * 1024) -> Iterator[bytes]:
    yield b'{"query": "'
    sent = 0
    while sent < total:
        yield b"a" * size
        sent += size
    yield b'"}'


def scenario_hostile(url: str, seconds: float) -> dict[str, Any]:
    cases: list[tuple[str, str, Any, dict[str, str]]] = []
    json_type = {"content-type": "application/json"}
    for route, templates in TEMPLATES.items():
        for i, template in enumerate(templates):
            for name, value in VALUES.items():
                body = template.encode().replace(S.encode(), value)
                cases.append((route, f"template {i}: {name}", body, json_type))
        for name, body in WHOLE.items():
            cases.append((route, name, body, json_type))
        cases.append(
            (route, "wrong content-type", b'{"query": "shoes"}', {"content-type": "text/plain"})
        )
        big = b'{"query": "' + b"a" * BIG + b'"}'
        cases.append((route, "25 MB body (Content-Length)", big, json_type))
        cases.append((route, "25 MB chunked body", "chunked", json_type))
    results: list[dict[str, Any]] = []
    # bounded: the list is fixed, but never more than a few times the scenario's seconds
    stop_at = time.monotonic() + max(60.0, seconds * 6)
    with httpx.Client(base_url=url, timeout=30) as client:
        for route, name, body, headers in cases:
            if time.monotonic() > stop_at:
                progress("hostile: time is up; the rest of the list was not sent")
                break
            started = time.perf_counter()
            r: httpx.Response | None = None
            for attempt in range(2):
                # once more on a fresh connection when the server dropped the pooled one (it
                # closes a connection after an unhandled error): a 500 must not hide the next case
                content = _chunks(BIG) if body == "chunked" else body
                try:
                    r = client.post(route, content=content, headers=headers)
                    break
                except httpx.TransportError as exc:
                    if attempt == 1:
                        name = f"{name} ({type(exc).__name__})"
            status = r.status_code if r is not None else 0
            results.append(
                {
                    "route": route,
                    "case": name,
                    "status": status,
                    "ms": (time.perf_counter() - started) * 1000,
                    "body": (r.text[:300] if r is not None and status >= 500 else None),
                }
            )
        alive = client.get("/healthz").status_code == 200
    by_route = {
        route: dict(Counter(str(r["status"]) for r in results if r["route"] == route))
        for route in TEMPLATES
    }
    fives = [r for r in results if r["status"] >= 500]
    no_answer = [r for r in results if r["status"] == 0]
    progress(
        f"hostile: {len(results)} requests, by status "
        f"{dict(Counter(str(r['status']) for r in results))}, "
        f"{len(fives)} answered 5xx, sidecar alive: {alive}"
    )
    for r in fives:
        progress(f"hostile: {r['status']} from {r['route']} {r['case']!r}: {r['body']}")
    return {
        "requests": len(results),
        "status_counts": dict(Counter(str(r["status"]) for r in results)),
        "non_2xx": non_2xx(results),
        "by_route": by_route,
        "five_xx": fives,
        "no_answer": no_answer,
        "alive_after": alive,
        "results": results,
    }


# ---------------------------------------------------------------- 3. rules rewrite


def scenario_rules(seconds: float, rewrites: int = 20) -> dict[str, Any]:
    from sidecar.rules.loader import parse_rules

    folder = Path(tempfile.mkdtemp(prefix="faults-rules-"))
    path = folder / "rules.yaml"
    default = (Path(__file__).parents[1] / "sidecar" / "rules" / "default.yaml").read_text(
        encoding="utf-8"
    )
    path.write_text(default, encoding="utf-8")
    invalid: list[tuple[str, bytes]] = [
        ("bad YAML", b"version: 1\nblend: {model_weight: 0.8\n  engine_weight: [\n"),
        ("invalid UTF-8", default.encode() + b"\n# \xff\xfe broken\n"),
        ("wrong schema", b"version: 2\nblend:\n  model_weight: lots\nunknown_key: true\n"),
    ]
    settings = {
        "cache": {"kind": "memory"},
        "rules": {"path": str(path), "watch": True, "watch_interval_s": 0.2},
    }
    records: list[dict[str, Any]] = []
    writes: list[dict[str, Any]] = []
    last_valid = parse_rules(default, str(path)).version
    try:
        progress("rules: starting the sidecar (rules watched every 0.2 s)")
        with serving_process(settings) as (url, pid):
            progress(f"rules: sidecar pid {pid} on {url}; warming up")
            warm_up(url)

            async def rewriter(t0: float) -> None:
                nonlocal last_valid
                gap = seconds * 0.8 / rewrites
                for i in range(rewrites):
                    await asyncio.sleep(gap)
                    if i % 2 == 0:
                        weight = 0.8 - 0.01 * (i // 2)
                        text = default.replace(
                            "model_weight: 0.8", f"model_weight: {weight:.2f}"
                        ).replace("engine_weight: 0.2", f"engine_weight: {1 - weight:.2f}")
                        text += f"\n# edit {i}\n"
                        data, kind = text.encode(), "valid"
                        last_valid = parse_rules(text, str(path)).version
                    else:
                        kind, data = invalid[(i // 2) % len(invalid)]
                    with path.open("wb") as handle:  # in place, as an editor might
                        handle.write(data)
                    writes.append({"t": time.perf_counter() - t0, "kind": kind})

            async def main() -> None:
                t0 = time.perf_counter()
                await asyncio.gather(search_load(url, seconds, t0, records), rewriter(t0))

            progress(f"rules: {CLIENTS} clients of /search for {seconds:.0f}s, {rewrites} rewrites")
            asyncio.run(main())
            time.sleep(1.0)  # a few watch intervals after the last write
            ready = httpx.get(f"{url}/readyz", timeout=10).json()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    rules = ready.get("rules", {})
    ok = bool(rules.get("watching")) and rules.get("version") == last_valid
    result = {
        "requests": len(records),
        "non_2xx": non_2xx(records),
        "status_counts": dict(Counter(str(r["status"]) for r in records)),
        "p99_ms": {"during rewrites": p99(records)},
        "writes": writes,
        "readyz_rules": rules,
        "expected_version": last_valid,
        "watching_and_last_valid_live": ok,
        "records": records,
    }
    progress(
        f"rules: {len(records)} requests, non-2xx {result['non_2xx']}; watching "
        f"{rules.get('watching')}, live {rules.get('version')} (expected {last_valid}): "
        f"{'OK' if ok else 'FAIL'}"
    )
    return result


# ---------------------------------------------------------------- report


def table(report: dict[str, Any]) -> str:
    rows = [("scenario", "requests", "non-2xx by code", "p99 ms per phase", "recover / check")]
    redis = report.get("redis")
    if redis:
        phases = ", ".join(f"{k} {v}" for k, v in redis["p99_ms"].items())
        rec = redis["recover_s"]
        rows.append(
            (
                "redis kill/restart",
                str(redis["requests"]),
                json.dumps(redis["non_2xx"]) if redis["non_2xx"] else "none",
                phases,
                "not recovered" if rec is None else f"{rec:.2f} s after restart",
            )
        )
    hostile = report.get("hostile")
    if hostile:
        rows.append(
            (
                "hostile bodies",
                str(hostile["requests"]),
                json.dumps(hostile["non_2xx"]),
                "-",
                f"{len(hostile['five_xx'])} x 5xx, {len(hostile['no_answer'])} no answer",
            )
        )
    rules = report.get("rules")
    if rules:
        rows.append(
            (
                "rules rewrite x20",
                str(rules["requests"]),
                json.dumps(rules["non_2xx"]) if rules["non_2xx"] else "none",
                f"during rewrites {rules['p99_ms']['during rewrites']}",
                "watching, last valid live"
                if rules["watching_and_last_valid_live"]
                else "FAIL: " + json.dumps(rules["readyz_rules"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(15, 5), gridspec_kw={"width_ratios": [2, 1]})
    ax = axes[0]
    redis = report.get("redis")
    if redis:
        colours = {"ok": "#2f6fde", "unavailable": "#d9534f"}
        for status in sorted({str(r.get("cache")) for r in redis["records"]}):
            rs = [r for r in redis["records"] if str(r.get("cache")) == status]
            ax.scatter(
                [r["t"] for r in rs],
                [r["ms"] for r in rs],
                s=6,
                color=colours.get(status, "#999999"),
                label=f"cache.status {status} ({len(rs)})",
            )
        ax.axvline(redis["kill_s"], color="#d9534f", linestyle="--", label="redis SIGKILL")
        ax.axvline(redis["restart_s"], color="#2a9d4b", linestyle="--", label="redis restart")
        if redis["recover_s"] is not None:
            ax.axvline(
                redis["restart_s"] + redis["recover_s"],
                color="#2a9d4b",
                linestyle=":",
                label="every later request ok",
            )
        ax.set_yscale("log")
        ax.set_xlabel("seconds since load start")
        ax.set_ylabel("/search latency, ms (log)")
        ax.set_title(f"/search under a redis kill and restart ({CLIENTS} clients)")
        ax.legend(fontsize=8)
    ax = axes[1]
    names = [n for n in ("redis", "hostile", "rules") if report.get(n)]
    codes = sorted({c for n in names for c in report[n]["status_counts"]}, key=int)
    width = 0.8 / max(1, len(codes))
    for j, code in enumerate(codes):
        values = [report[n]["status_counts"].get(code, 0) for n in names]
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(names))]
        bars = ax.bar(xs, values, width, label=code if code != "0" else "no answer")
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(list(range(len(names))), names)
    ax.set_yscale("log")
    ax.set_ylabel("responses (log)")
    ax.set_title("status codes per scenario")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description="fault suite against real local processes")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each scenario")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if shutil.which("redis-server") is None:
        sys.exit("redis-server is not on PATH")
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cores": os.cpu_count(),
        "clients": CLIENTS,
        "window": WINDOW,
        "seconds": args.seconds,
    }
    report.update(scenario_redis(args.seconds))
    report["rules"] = scenario_rules(args.seconds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    plot(report, args.out / "faults.png")
    print(table(report))
    print(f"wrote {args.out / 'faults.json'} and {args.out / 'faults.png'}")


if __name__ == "__main__":
    main()
