"""What the full benchmark run's report says (`python -m bench.run`): its goals as pass/fail
lines, and its figure (latency, added latency, batching, memory), drawn with matplotlib.

The goals are meant for a quiet 2-core machine: on a shared one the absolute figures are noise,
the ratios less so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

GOALS = {
    "cold_p95_shared_ms": 100.0,
    "added_p50_ms": 1.5,
    "batching_ratio_32": 3.0,
    "rss_growth_after_full_pct": 3.0,
}


def goals(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's goals as pass/fail lines (a goal whose part did not run says so)."""
    lines: list[dict[str, Any]] = []

    def line(name: str, value: float | None, limit: float, at_most: bool, note: str) -> None:
        if value is None:
            lines.append({"goal": name, "result": "not measured", "note": note})
            return
        ok = value <= limit if at_most else value >= limit
        lines.append(
            {
                "goal": name,
                "value": round(value, 3),
                "limit": f"{'<=' if at_most else '>='} {limit}",
                "result": "pass" if ok else "FAIL",
                "note": note,
            }
        )

    engine = next((e for e in report.get("engines", []) if "skipped" not in e), None)
    shared = (engine or {}).get("cold_shared", {})
    line(
        "cold p95 (b), fresh sidecar on a filled Redis",
        shared.get("p95_ms"),
        GOALS["cold_p95_shared_ms"],
        True,
        f"{(engine or {}).get('engine', 'no engine')}; pair scores new, embeddings shared; "
        f"answers {shared.get('statuses', {})}",
    )
    added = (engine or {}).get("added", {}).get("added_ms", {})
    for route in ("search", "drop_in"):
        line(
            f"added latency over the engine, p50 warm, window 100 ({route})",
            added.get(route, {}).get("p50"),
            GOALS["added_p50_ms"],
            True,
            "bench.engine_overhead",
        )
    ratio = report.get("batching", {}).get("ratio", {}).get(32)
    line(
        "batching: new-query throughput at 32 clients, on / off",
        ratio,
        GOALS["batching_ratio_32"],
        False,
        "same run, embedded engine",
    )
    mem = report.get("memory", {})
    line(
        "RSS flat once the caches are full (growth over the last third, %)",
        mem.get("growth_after_full_pct"),
        GOALS["rss_growth_after_full_pct"],
        True,
        "query embeddings full too"
        if mem.get("query_embeddings_full")
        else "the query embeddings (10,000) did not fill in this run: too few requests",
    )
    for name, stats in hybrid_added(report):
        lines.append(
            {
                "goal": f"added by the hybrid vector leg, {name}",
                "value": round(stats["p50_ms"], 2),
                "limit": f"p50; p95 {stats['p95_ms']:.2f}",
                "result": "reported",
                "note": "no goal set: the price of the recall it buys (docs/evaluation.md)",
            }
        )
    return lines


def hybrid_added(report: dict[str, Any]) -> list[tuple[str, dict[str, float]]]:
    """(case, {p50_ms, p95_ms}) of the milliseconds the vector leg adds: end to end on the
    embedded default, and to the first stage on each engine measured."""
    hybrid = report.get("hybrid", {})
    cases: list[tuple[str, dict[str, float]]] = []
    added = hybrid.get("end_to_end", {}).get("added", {})
    if "p50_ms" in added:
        cases.append(("/search embedded, warm", added))
    stages = [hybrid.get("first_stage")] + [
        e.get("hybrid_first_stage") for e in report.get("engines", [])
    ]
    for stage in (s for s in stages if s):
        row = next(r for r in stage["results"] if r["name"] == "added by hybrid (warm)")
        cases.append((f"first stage {stage['engine']}, warm", row))
    return cases


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 3, figsize=(16, 13))
    ax = axes[0][0]
    names, p50, p95 = [], [], []
    cases = [(report["end_to_end"], "cold"), (report["end_to_end"], "warm")]
    for engine in (e for e in report.get("engines", []) if "skipped" not in e):
        cases.append((engine["end_to_end"], "cold"))
        if "p50_ms" in engine.get("cold_shared", {}):
            cases.append(
                ({"engine": engine["engine"], "cold (b)": engine["cold_shared"]}, "cold (b)")
            )
    for e2e, case in cases:
        if "p50_ms" not in e2e.get(case, {}):
            continue
        names.append(f"{e2e['engine']}\n{case}")
        p50.append(e2e[case]["p50_ms"])
        p95.append(e2e[case]["p95_ms"])
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], p50, 0.4, label="p50", color="#2f6fde")
    ax.bar([i + 0.2 for i in x], p95, 0.4, label="p95", color="#9aa5b1")
    ax.axhline(GOALS["cold_p95_shared_ms"], color="#c0392b", ls="--", lw=1, label="goal (b) p95")
    ax.set_xticks(list(x), names, fontsize=8)
    ax.set_ylabel("ms (log)")
    ax.set_yscale("log")
    ax.set_title("/search latency, window 100 (ok answers)")
    ax.legend(fontsize=8)

    ax = axes[0][1]
    bars: list[tuple[str, float]] = []
    for engine in (e for e in report.get("engines", []) if "skipped" not in e):
        for route, stats in engine.get("added", {}).get("added_ms", {}).items():
            bars.append((f"{engine['engine']}\n{route}", stats["p50"]))
    ax.bar([b[0] for b in bars], [b[1] for b in bars], color="#2f6fde")
    ax.axhline(GOALS["added_p50_ms"], color="#c0392b", ls="--", lw=1, label="goal")
    ax.set_ylabel("ms")
    ax.set_title("added over the engine alone, p50 warm")
    ax.legend(fontsize=8)

    batch = report.get("batching", {})
    for ax, key, label, title in (
        (axes[0][2], "qps", "ok answers/s", "new-query throughput"),
        (axes[1][0], "p95_ms", "p95 ms", "new-query latency under load"),
    ):
        for name in ("on", "off"):
            rows = batch.get(name, [])
            ax.plot(
                [r["clients"] for r in rows],
                [r[key] for r in rows],
                marker="o",
                label=f"micro-batching {name}",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(label)
        ax.set_title(title)
        ax.legend(fontsize=8)

    ax = axes[1][1]
    ratios = {int(k): v for k, v in batch.get("ratio", {}).items() if v is not None}
    ax.plot(list(ratios), list(ratios.values()), marker="o", color="#2f6fde")
    ax.axhline(GOALS["batching_ratio_32"], color="#c0392b", ls="--", lw=1, label="goal at 32")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("on / off")
    ax.set_title("batching speed-up")
    ax.legend(fontsize=8)

    ax = axes[1][2]
    mem = report.get("memory", {})
    samples = mem.get("samples", [])
    ax.plot([s["requests"] for s in samples], [s["rss_mb"] for s in samples], marker="o")
    ax.set_xlabel("requests (distinct queries)")
    ax.set_ylabel("RSS MB")
    ax.set_title("resident memory as the caches fill")
    ax = axes[2][0]
    added = hybrid_added(report)
    x = range(len(added))
    ax.bar([i - 0.2 for i in x], [a["p50_ms"] for _, a in added], 0.4, label="p50")
    ax.bar([i + 0.2 for i in x], [a["p95_ms"] for _, a in added], 0.4, label="p95")
    ax.set_xticks(list(x), [name.replace(", ", "\n") for name, _ in added], fontsize=8)
    ax.set_ylabel("ms")
    ax.set_title("added by the hybrid vector leg (window 100)")
    ax.legend(fontsize=8)
    for unused in (axes[2][1], axes[2][2]):
        unused.axis("off")
    fig.suptitle(
        f"rerank sidecar benchmarks — {report['machine']['cores']} cores, "
        f"{report['machine']['cpu']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
