"""The model tier, in process vs through vLLM: `python -m bench.model_tier [--requests N]`.

The same tiny random Lychee-shaped weights (Qwen2.5-VL, head_dim 32, built here at run time) are
scored two ways in one run, each by a sidecar in a process of its own driven over HTTP
(`POST /api/rerank`, as users call it):

  in process: `scorer.kind: lychee` (the sidecar's own forward pass, float32 on the CPU);
  vLLM:       `scorer.kind: vllm`, pointed at vLLM's CPU build serving those weights with exactly
              the arguments `rerank-sidecar vllm-args --family lychee ... --dtype float32` prints.

Cells: windows of 50 and 100 text documents (demo products), 1 and 8 concurrent queries, every
query distinct and the sidecar's score cache off (`cache.kind: none`), so every pair goes to the
model; with --images also window 50 of image+text documents (the demo's product images, small
`max_pixels`). Per cell: pairs/s, p50/p95 per request and, for vLLM, the prefix-cache hit rate
from the delta of its `/metrics` counters `vllm:prefix_cache_queries` / `vllm:prefix_cache_hits`.
The two tiers run one after the other (the in-process sidecar is stopped before vLLM starts), so
neither idles beside the other's measurement; the machine's load average is recorded per tier.

Results: bench/results/model_tier.json and model_tier.png. The issue's goal: through vLLM at
least as many pairs/s as in process at window 100 with 8 concurrent queries, and prefix-cache
hits above zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.search_latency import percentile
from bench.server import serving_process

RESULTS = Path(__file__).with_name("results")
WINDOWS = (50, 100)
CONCURRENCY = (1, 8)
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 64 * 28 * 28  # small images: a tiny model on a shared 2-core machine
TIMEOUT_MS = 30_000  # the most /api/rerank takes (limits): a busy CPU must not cut it short
SERVER = "bench-model-tier"


def progress(message: str) -> None:
    print(f"[model_tier {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ----- the workload ----------------------------------------------------------------------------
def documents(window: int, images: bool) -> list[dict[str, str]]:
    from sidecar.demo import load_catalog

    products = load_catalog()[:window]
    docs = []
    for p in products:
        text = f"{p['title']} | " + " | ".join(p.get("selling_points", []))
        doc = {"text": text}
        if images:
            doc["image_url"] = p["image_url"]
        docs.append(doc)
    return docs


def query_texts() -> list[str]:
    from sidecar.demo import DEMO_DIR

    raw = json.loads((DEMO_DIR / "queries.json").read_text(encoding="utf-8"))
    return [q["query"] if isinstance(q, dict) else str(q) for q in raw]


def cells(with_images: bool) -> list[tuple[str, int, int]]:
    out = [("text", w, c) for w in WINDOWS for c in CONCURRENCY]
    if with_images:
        out += [("image+text", 50, c) for c in CONCURRENCY]
    return out


async def run_cell(
    url: str, kind: str, window: int, clients: int, requests: int, tag: str
) -> dict[str, Any]:
    """`requests` /api/rerank calls from `clients` concurrent clients, every query new."""
    docs = documents(window, kind != "text")
    texts = query_texts()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    counter = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for n in counter:
            body = {
                "query": f"{texts[n % len(texts)]} {tag}{n}",  # distinct: no cache answers it
                "documents": docs,
                "timeout_ms": TIMEOUT_MS,
            }
            t0 = time.perf_counter()
            r = await client.post("/api/rerank", json=body)
            elapsed = (time.perf_counter() - t0) * 1000
            ok = r.status_code == 200
            status = r.json().get("rerank_status", "?") if ok else str(r.status_code)
            statuses[status] = statuses.get(status, 0) + 1
            if status == "ok":
                latencies.append(elapsed)

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_MS / 1000 + 30, limits=limits) as c:
        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for _ in range(clients)))
        elapsed_s = time.perf_counter() - started
    ok = len(latencies)
    return {
        "kind": kind,
        "window": window,
        "clients": clients,
        "requests": requests,
        "statuses": statuses,
        "ok": ok,
        "seconds": round(elapsed_s, 2),
        "pairs_per_s": round(ok * window / elapsed_s, 1),
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p95_ms": round(percentile(latencies, 95), 1) if latencies else None,
    }


def requests_for(clients: int, base: int) -> int:
    return base if clients == 1 else base * 2


def measure(
    url: str, tier: str, with_images: bool, base: int, vllm_url: str | None = None
) -> list[dict[str, Any]]:
    """Every cell on the sidecar at `url`; with `vllm_url`, each cell's prefix-cache counters."""
    rows = []
    for kind, window, clients in cells(with_images):
        # one unmeasured request first: compiled kernels, the image path, connections
        warm = asyncio.run(run_cell(url, kind, window, 1, 1, f"warm{tier}{kind}{window}{clients}n"))
        if not warm["ok"]:  # a broken setup, not a measurement: stop before the long part
            raise SystemExit(f"{tier}: the warm-up request was not ok: {warm['statuses']}")
        before = prefix_counters(vllm_url) if vllm_url else None
        row = asyncio.run(
            run_cell(url, kind, window, clients, requests_for(clients, base), f"{tier}{clients}n")
        )
        row["tier"] = tier
        if before is not None and vllm_url:
            after = prefix_counters(vllm_url)
            row["prefix_cache"] = prefix_delta(before, after)
        rows.append(row)
        hit = row.get("prefix_cache", {}).get("hit_rate")
        progress(
            f"{tier:10s} {kind:10s} window {window:3d} x {clients} clients: "
            f"{row['pairs_per_s']} pairs/s, p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms, "
            f"{row['statuses']}" + ("" if hit is None else f", prefix-cache hit rate {hit}")
        )
    return rows


# ----- vLLM's prefix-cache counters ------------------------------------------------------------
def prefix_counters(vllm_url: str) -> dict[str, float]:
    """Sum of each `vllm:prefix_cache_*` counter over its labels, from vLLM's /metrics."""
    text = httpx.get(f"{vllm_url.rstrip('/')}/metrics", timeout=10).text
    return parse_prefix_counters(text)


def parse_prefix_counters(text: str) -> dict[str, float]:
    totals = {"queries": 0.0, "hits": 0.0}
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith("vllm:prefix_cache_"):
            continue
        name, _, value = line.rpartition(" ")
        metric = name.split("{", 1)[0].removeprefix("vllm:prefix_cache_").removesuffix("_total")
        if metric in totals:
            totals[metric] += float(value)
    return totals


def prefix_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    queries = after["queries"] - before["queries"]
    hits = after["hits"] - before["hits"]
    return {
        "queries": int(queries),
        "hits": int(hits),
        "hit_rate": round(hits / queries, 3) if queries else None,
    }


# ----- the two tiers ---------------------------------------------------------------------------
def sidecar_settings(scorer: dict[str, Any], images_root: Path) -> dict[str, Any]:
    return {
        "scorer": {"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS, **scorer},
        "cache": {"kind": "none"},  # the model is what is measured
        "images": {"local_root": str(images_root)},
        "rules": {"watch": False},
    }


def recipe_args(model: Path) -> list[str]:
    """What `rerank-sidecar vllm-args` prints for this model, split as a shell would."""
    cmd = [sys.executable, "-m", "sidecar.cli", "vllm-args", "--family", "lychee"]
    cmd += ["--model", str(model), "--min-pixels", str(MIN_PIXELS)]
    cmd += ["--max-pixels", str(MAX_PIXELS), "--dtype", "float32"]
    printed = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return shlex.split(printed)


def vllm_unavailable() -> str | None:
    if os.environ.get("VLLM_PYTHON"):
        return None
    from model_servers.install import installed

    if installed():
        return None
    return "vLLM's CPU environment is not installed (python -m model_servers install)"


def run(base: int, with_images: bool) -> dict[str, Any]:
    from model_servers import vllm_cpu
    from sidecar.demo import DEMO_DIR
    from tests.fixtures.tiny_qwen import build_tiny_qwen

    reason = vllm_unavailable()
    if reason:
        raise SystemExit(f"bench.model_tier needs vLLM: {reason}")
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "model": "tiny random Qwen2.5-VL laid out like Lychee (hidden 64, 2 layers, head_dim 32)",
        "min_pixels": MIN_PIXELS,
        "max_pixels": MAX_PIXELS,
        "rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="model-tier-") as folder:
        model = build_tiny_qwen(Path(folder) / "tiny-lychee", head_dim=32)
        progress(f"tiny Lychee built at {model}")

        report["load_in_process"] = load_average()
        in_process = {"kind": "lychee", "model_path": str(model), "device": "cpu"}
        progress("in process: starting a sidecar with scorer.kind lychee")
        with serving_process(sidecar_settings(in_process, DEMO_DIR)) as (url, _pid):
            report["rows"] += measure(url, "in process", with_images, base)
        report["load_in_process"] += load_average()

        args = recipe_args(model)
        report["vllm_args"] = shlex.join(args)
        state = Path(folder) / "vllm-state"
        progress(f"vLLM: starting (about 2 minutes here) with {shlex.join(args)}")
        info = vllm_cpu.start(str(model), args, name=SERVER, state_dir=state)
        try:
            vllm_url = str(info["url"])
            report["vllm"] = {k: info[k] for k in ("ready_s", "rss_mib") if k in info}
            progress(f"vLLM ready on {vllm_url} in {info.get('ready_s')} s")
            report["load_vllm"] = load_average()
            through = {"kind": "vllm", "url": vllm_url, "model": str(info["served_model_name"])}
            with serving_process(sidecar_settings(through, DEMO_DIR)) as (url, _pid):
                before = prefix_counters(vllm_url)
                report["rows"] += measure(url, "vllm", with_images, base, vllm_url)
                report["prefix_cache_run"] = prefix_delta(before, prefix_counters(vllm_url))
            report["load_vllm"] += load_average()
        finally:
            vllm_cpu.stop(SERVER, state)
            progress("vLLM stopped")
    report["goal"] = goal(report["rows"], report.get("prefix_cache_run", {}))
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return report


def goal(rows: list[dict[str, Any]], prefix: dict[str, Any]) -> dict[str, Any]:
    def pairs(tier: str) -> float:
        for r in rows:
            if (r["tier"], r["kind"], r["window"], r["clients"]) == (tier, "text", 100, 8):
                return float(r["pairs_per_s"])
        return 0.0

    vllm, local = pairs("vllm"), pairs("in process")
    return {
        "window100_8clients_pairs_per_s": {"in process": local, "vllm": vllm},
        "vllm_at_least_in_process": vllm >= local > 0,
        "prefix_cache_hits_above_zero": prefix.get("hits", 0) > 0,
    }


# ----- table and plot --------------------------------------------------------------------------
def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| tier | documents | window | clients | pairs/s | p50 ms | p95 ms | prefix-cache hits |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        prefix = r.get("prefix_cache")
        hits = "-" if prefix is None or prefix["hit_rate"] is None else f"{prefix['hit_rate']:.0%}"
        lines.append(
            f"| {r['tier']} | {r['kind']} | {r['window']} | {r['clients']} | {r['pairs_per_s']} "
            f"| {r['p50_ms']} | {r['p95_ms']} | {hits} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = []
    for r in rows:
        label = f"{r['kind']}\nwindow {r['window']} x {r['clients']}"
        if label not in labels:
            labels.append(label)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(labels)), 4))
    width = 0.38
    for offset, (tier, colour) in enumerate((("in process", "#7a7a7a"), ("vllm", "#2f6fde"))):
        values = {
            f"{r['kind']}\nwindow {r['window']} x {r['clients']}": r["pairs_per_s"]
            for r in rows
            if r["tier"] == tier
        }
        xs = [i + (offset - 0.5) * width for i in range(len(labels))]
        heights = [values.get(label, 0) for label in labels]
        bars = ax.bar(xs, heights, width, label=tier, color=colour)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("pairs/s (higher is better)")
    ax.set_title("tiny Lychee: in process vs vLLM (CPU), /api/rerank, score cache off")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.model_tier", description=__doc__)
    parser.add_argument(
        "--requests", type=int, default=12, help="requests per cell at 1 client (twice at 8)"
    )
    parser.add_argument(
        "--no-images", dest="images", action="store_false", help="text documents only"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report = run(args.requests, args.images)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model_tier.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    plot(report["rows"], args.out / "model_tier.png")
    print(table(report["rows"]))
    print(json.dumps(report["goal"]))
    print(f"wrote {args.out / 'model_tier.json'} and {args.out / 'model_tier.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
