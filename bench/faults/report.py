"""The suite's report: one table row per scenario (or per phase of one), one plot panel per
scenario plus the status codes of all of them."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple


class Row(NamedTuple):
    scenario: str
    requests: str
    non_2xx: str  # non-2xx answers by status code
    p99: str  # p99 ms per phase
    check: str  # time to recover, or what the scenario checks, measured
    passed: bool | None  # None: nothing to judge (skipped)


HEADER = (
    "scenario",
    "requests",
    "non-2xx by code",
    "p99 ms per phase",
    "recover / check",
    "verdict",
)


def skipped_row(name: str, reason: str) -> Row:
    return Row(name, "-", "-", "-", f"skipped: {reason}", None)


def table(rows: Sequence[Row]) -> str:
    cells = [HEADER] + [
        (*row[:5], "PASS" if row.passed else ("-" if row.passed is None else "FAIL"))
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    lines = [
        " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in cells
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


Panel = Callable[[Any, dict[str, Any]], None]


def scatter_by(
    ax: Any,
    records: Sequence[dict[str, Any]],
    key: Callable[[dict[str, Any]], Any],
    colours: dict[Any, str],
    *,
    default: str = "#999999",
    size: float = 6,
    label: Callable[[Any], str] = str,
) -> None:
    """Each record a point (seconds since start, ms), one colour and legend entry per key."""
    for value in sorted({key(r) for r in records}):
        rs = [r for r in records if key(r) == value]
        ax.scatter(
            [r["t"] for r in rs],
            [r["ms"] for r in rs],
            s=size,
            color=colours.get(value, default),
            label=f"{label(value)} ({len(rs)})",
        )


def slow_phases_p99(result: dict[str, Any]) -> str:
    """The p99 of a normal / slow / after load, the slow phase's max beside it."""
    p = result["p99_ms"]
    return (
        f"normal {p['normal']}, slow {p['slow']} (max {result['max_ms']['slow']}), "
        f"after {p['after']}"
    )


def slow_phase(ax: Any, result: dict[str, Any], what: str) -> None:
    """The slow phase shaded, the request's timeout_ms and the slack allowed above it."""
    marks = result["marks"]
    ax.axvspan(marks["slow"], marks["after"], color="#e8a33d", alpha=0.12, label=f"{what} slow")
    ax.axhline(result["timeout_ms"], color="#555555", linestyle="--", label="timeout_ms")
    slack = result["slack_ms"]
    ax.axhline(result["timeout_ms"] + slack, color="#d9534f", linestyle=":", label=f"+{slack:g} ms")


def plot(results: dict[str, dict[str, Any]], panels: dict[str, Panel], path: Path) -> None:
    """One panel per scenario that ran (in `panels` order), then the status codes of all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in panels if n in results and "skipped" not in results[n]]
    count = len(names) + 1
    columns = min(3, count)
    lines = math.ceil(count / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(6.5 * columns, 4.6 * lines), squeeze=False)
    flat = [ax for line in axes for ax in line]
    for ax, name in zip(flat, names, strict=False):
        panels[name](ax, results[name])
    status_panel(flat[len(names)], {n: results[n] for n in names})
    for ax in flat[count:]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def status_panel(ax: Any, results: dict[str, dict[str, Any]]) -> None:
    names = [n for n, r in results.items() if r.get("status_counts")]
    if not names:
        ax.set_visible(False)
        return
    all_codes = sorted({c for n in names for c in results[n]["status_counts"]}, key=int)
    width = 0.8 / max(1, len(all_codes))
    for j, code in enumerate(all_codes):
        values = [results[n]["status_counts"].get(code, 0) for n in names]
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(names))]
        bars = ax.bar(xs, values, width, label=code if code != "0" else "no answer")
        ax.bar_label(bars, fontsize=6)
    ax.set_xticks(list(range(len(names))), names, rotation=30, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("responses (log)")
    ax.set_title("status codes per scenario")
    ax.legend(fontsize=7, ncol=2)
