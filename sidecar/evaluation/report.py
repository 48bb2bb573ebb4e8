"""Aggregate per-query results, and write them out: a terminal table, JSON, Markdown, plots."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sidecar.evaluation.metrics import bootstrap_ci, paired_permutation_p
from sidecar.evaluation.runner import WINDOW, QueryResult, orders_of

METRICS = ("ndcg@10", "mrr", "recall@10")
# Paired NDCG@10 comparisons a report adds when both orders are in it: (order, baseline).
COMPARISONS = (("tuned", "model"), ("tuned", "reranked"), ("calibrated", "reranked"))


def _mean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def summarize(results: Sequence[QueryResult]) -> dict[str, Any]:
    orders = orders_of(results)

    def block(rows: Sequence[QueryResult]) -> dict[str, Any]:
        out: dict[str, Any] = {"queries": len(rows)}
        for order in orders:
            out[order] = {}
            for metric in METRICS:
                values = [r.metrics[order][metric] for r in rows]
                low, high = bootstrap_ci(values)
                out[order][metric] = {"mean": _mean(values), "ci95": [low, high]}
        recall = [r.window_recall for r in rows]
        out["window_recall"] = {"mean": _mean(recall), "ci95": list(bootstrap_ci(recall))}
        engine = [r.metrics["engine"]["ndcg@10"] for r in rows]
        reranked = [r.metrics["reranked"]["ndcg@10"] for r in rows]
        out["reranked_vs_engine"] = {
            "ndcg@10_gain": _mean(reranked) - _mean(engine),
            "p_value": paired_permutation_p(engine, reranked),
            "improved": sum(b > a + 1e-9 for a, b in zip(engine, reranked, strict=True)),
            "worse": sum(b < a - 1e-9 for a, b in zip(engine, reranked, strict=True)),
        }
        for order, baseline in COMPARISONS:
            if order in orders and baseline in orders:
                a = [r.metrics[baseline]["ndcg@10"] for r in rows]
                b = [r.metrics[order]["ndcg@10"] for r in rows]
                diff = [y - x for x, y in zip(a, b, strict=True)]
                out[f"{order}_vs_{baseline}"] = {
                    "ndcg@10_gain": _mean(b) - _mean(a),
                    "ci95": list(bootstrap_ci(diff)),
                    "p_value": paired_permutation_p(a, b),
                }
        return out

    types = sorted({r.query_type for r in results})
    complete = [r for r in results if r.missed == 0]
    return {
        "orders": orders,
        "overall": block(results),
        "by_type": {t: block([r for r in results if r.query_type == t]) for t in types},
        # where the first stage found every judged product, only the rules stand between the
        # page and the model alone: the default path should reach it there
        "complete_window": block(complete) if complete else {"queries": 0},
    }


def table(summary: dict[str, Any], title: str) -> str:
    orders = summary["orders"]
    lines = [
        title,
        f"{'segment':14s} {'n':>5s} "
        + " ".join(f"{o:>10s}" for o in orders)
        + f" {'gain':>7s} {'p':>7s}",
    ]
    rows = [("overall", summary["overall"]), *summary["by_type"].items()]
    for metric in METRICS:
        lines.append(f"-- {metric}")
        for name, block in rows:
            cells = " ".join(f"{block[o][metric]['mean']:10.3f}" for o in orders)
            extra = ""
            if metric == "ndcg@10":
                cmp = block["reranked_vs_engine"]
                extra = f" {cmp['ndcg@10_gain']:+7.3f} {cmp['p_value']:7.4f}"
            lines.append(f"{name[:14]:14s} {block['queries']:5d} {cells}{extra}")
    lines.append(f"-- judged-relevant products in the first stage's top {WINDOW}")
    for name, block in rows:
        lines.append(
            f"{name[:14]:14s} {block['queries']:5d} {block['window_recall']['mean']:10.3f}"
        )
    for order, baseline in COMPARISONS:
        cmp = summary["overall"].get(f"{order}_vs_{baseline}")
        if cmp is not None:
            low, high = cmp["ci95"]
            lines.append(
                f"NDCG@10 {order} - {baseline}: {cmp['ndcg@10_gain']:+.4f} "
                f"[{low:+.4f}, {high:+.4f}], p = {cmp['p_value']:.4f}"
            )
    lines.append(complete_line(summary))
    return "\n".join(lines)


def complete_line(summary: dict[str, Any]) -> str:
    """NDCG@10 of each order on the queries whose first stage found every judged product."""
    block = summary["complete_window"]
    if not block["queries"]:
        return "no query's first stage found every judged product"
    cells = ", ".join(
        f"{o} {block[o]['ndcg@10']['mean']:.3f}" for o in summary["orders"] if o != "random"
    )
    return (
        f"where the first stage found every judged product ({block['queries']} of "
        f"{summary['overall']['queries']} queries), NDCG@10: {cells}"
    )


def write(
    out: Path,
    name: str,
    summary: dict[str, Any],
    results: Sequence[QueryResult],
    meta: dict[str, Any],
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "dataset": name,
        **meta,
        "summary": summary,
        "queries": [
            {
                "query": r.query.text,
                "type": r.query_type,
                "missed": r.missed,
                "window_recall": r.window_recall,
                "metrics": r.metrics,
            }
            for r in results
        ],
    }
    json_path = out / f"{name}.json"
    json_path.write_text(json.dumps(data, indent=2, allow_nan=True), encoding="utf-8")
    plot_path = out / f"{name}.png"
    _plot(plot_path, name, summary, results)
    md_path = out / f"{name}.md"
    md_path.write_text(_markdown(name, summary, meta, plot_path.name), encoding="utf-8")
    return [json_path, md_path, plot_path]


def _markdown(name: str, summary: dict[str, Any], meta: dict[str, Any], plot: str) -> str:
    orders = summary["orders"]
    lines = [
        f"# Ranking quality: {name}",
        "",
        f"Scorer `{meta.get('model')}`, engine `{meta.get('engine')}`, rules "
        f"`{meta.get('rules_version')}`, {summary['overall']['queries']} queries, "
        f"{meta.get('seconds', 0):.0f} s.",
        "",
        "| segment | n | metric | " + " | ".join(orders) + " | reranked − engine | p |",
        "| --- | --- | --- | " + " | ".join("---" for _ in orders) + " | --- | --- |",
    ]
    rows = [("overall", summary["overall"]), *summary["by_type"].items()]
    for seg, block in rows:
        for metric in METRICS:
            cells = " | ".join(
                f"{block[o][metric]['mean']:.3f} [{block[o][metric]['ci95'][0]:.3f}, "
                f"{block[o][metric]['ci95'][1]:.3f}]"
                for o in orders
            )
            cmp = block["reranked_vs_engine"]
            tail = (
                f"{cmp['ndcg@10_gain']:+.3f} | {cmp['p_value']:.4f}"
                if metric == "ndcg@10"
                else " | "
            )
            lines.append(f"| {seg} | {block['queries']} | {metric} | {cells} | {tail} |")
    lines += [
        "",
        f"- {complete_line(summary)[0].upper()}{complete_line(summary)[1:]}.",
        "",
        "Brackets: 95% bootstrap confidence interval over queries. p: paired "
        "randomization test of reranked vs engine NDCG@10.",
        "",
        "Orders: *engine* = first stage; *reranked* = the pipeline (model blended by the "
        "rules, drops applied); *calibrated* = the same rules on calibrated scores; *tuned* = "
        "the `--rules` file (on calibrated scores when there is a calibration); *model* = "
        "model score alone over all judged candidates; *random* = seeded shuffle.",
        "",
    ]
    for order, baseline in COMPARISONS:
        cmp = summary["overall"].get(f"{order}_vs_{baseline}")
        if cmp is not None:
            low, high = cmp["ci95"]
            lines.append(
                f"- NDCG@10 {order} − {baseline}: {cmp['ndcg@10_gain']:+.4f} "
                f"[{low:+.4f}, {high:+.4f}], p = {cmp['p_value']:.4f}"
            )
    calibration = meta.get("calibration")
    if calibration:
        lines += [
            "",
            f"Calibration `{calibration['file']}` ({calibration['method']}, relevant: "
            f"{calibration['relevant']}): ECE on these {calibration['pairs']} pairs "
            f"{calibration['ece_raw']:.4f} raw, {calibration['ece_calibrated']:.4f} calibrated; "
            f"{calibration['overlap']} of these queries were fitted on.",
            "",
            f"![reliability diagram]({calibration['plot']})",
        ]
    lines += ["", f"![NDCG@10 by query type and gain per query]({plot})", ""]
    return "\n".join(lines)


def _plot(path: Path, name: str, summary: dict[str, Any], results: Sequence[QueryResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    segments = ["overall", *summary["by_type"]]
    blocks = [summary["overall"], *summary["by_type"].values()]
    fig, (bars, hist) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = np.arange(len(segments))
    colors = {"engine": "#9aa5b1", "reranked": "#2f6fde", "calibrated": "#7b5ea7"}
    shown = [o for o in ("engine", "reranked", "calibrated", "tuned") if o in summary["orders"]]
    width = 0.8 / len(shown)
    for i, order in enumerate(shown):
        offset, color = (i - (len(shown) - 1) / 2) * width, colors.get(order, "#2a9d5c")
        means = [b[order]["ndcg@10"]["mean"] for b in blocks]
        errs = np.array(
            [
                [m - b[order]["ndcg@10"]["ci95"][0], b[order]["ndcg@10"]["ci95"][1] - m]
                for m, b in zip(means, blocks, strict=True)
            ]
        ).T
        bars.bar(x + offset, means, width, yerr=errs, label=order, color=color, capsize=3)
    bars.set_xticks(x, [f"{s}\n(n={b['queries']})" for s, b in zip(segments, blocks, strict=True)])
    bars.set_ylabel("NDCG@10")
    lowest = min(b[o]["ndcg@10"]["ci95"][0] for b in blocks for o in shown)
    bars.set_ylim(max(0.0, lowest - 0.1), 1)  # zoomed: the differences are what matter
    bars.set_title(f"{name}: {' vs '.join(shown)}")
    bars.legend(loc="lower right")
    gains = [r.metrics["reranked"]["ndcg@10"] - r.metrics["engine"]["ndcg@10"] for r in results]
    hist.hist(gains, bins=30, color="#2f6fde")
    hist.axvline(0, color="black", linewidth=1)
    hist.set_xlabel("NDCG@10 gain per query (reranked − engine)")
    hist.set_ylabel("queries")
    hist.set_title(
        f"better: {sum(g > 1e-9 for g in gains)}, worse: "
        f"{sum(g < -1e-9 for g in gains)}, same: {sum(abs(g) <= 1e-9 for g in gains)}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
