"""Rules preview: run real queries through the pipeline with the live rules and with a candidate
rules file, and put the two orders side by side with the rules that fired per hit.

Both runs share the pipeline and its score cache, so the second run of a query costs no model
time and both orders come from the same scores: any difference is the rules' doing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sidecar.pipeline import PageHit, SearchOutcome
from sidecar.rules.loader import LoadedRules
from sidecar.services import Services, operator_deadline, params_for


async def preview(
    services: Services,
    candidate: LoadedRules,
    queries: Sequence[str],
    size: int = 10,
    window: int | None = None,
) -> list[dict[str, Any]]:
    live = services.rules.current
    out = []
    for text in queries:
        params = params_for(services, text, size, window)
        # each run its own budget: the second must not get what the first left
        live_params, candidate_params = (
            replace(params, rules=live),
            replace(params, rules=candidate),
        )
        before = await services.pipeline.search(live_params, operator_deadline(services))
        after = await services.pipeline.search(candidate_params, operator_deadline(services))
        out.append(compare(params.query.text, before, after))
    return out


def compare(query: str, before: SearchOutcome, after: SearchOutcome) -> dict[str, Any]:
    was = {h.document.id: i for i, h in enumerate(before.hits)}
    rows = []
    for i in range(max(len(before.hits), len(after.hits))):
        new = after.hits[i] if i < len(after.hits) else None
        moved = None
        if new is not None:
            old_pos = was.get(new.document.id)
            moved = "new" if old_pos is None else old_pos - i  # > 0: moved up
        rows.append(
            {
                "position": i + 1,
                "live": _row(before.hits[i]) if i < len(before.hits) else None,
                "candidate": _row(new) if new is not None else None,
                "moved": moved,
            }
        )
    return {
        "query": query,
        "live_version": before.rules_version,
        "candidate_version": after.rules_version,
        "live_dropped": before.dropped,
        "candidate_dropped": after.dropped,
        "rerank_status": after.report.status,
        "rows": rows,
    }


def _row(hit: PageHit) -> dict[str, Any]:
    ranked = hit.ranked
    return {
        "id": hit.document.id,
        "title": hit.document.title,
        "score": round(ranked.final, 4) if ranked else hit.hit.score,
        "band": ranked.band if ranked else "unscored",
        "rules": [f"{f.kind}:{f.rule} {f.effect}".strip() for f in ranked.fired] if ranked else [],
    }


def render_text(results: Sequence[dict[str, Any]], width: int = 60) -> str:
    """Side-by-side text for a terminal."""
    lines: list[str] = []
    for res in results:
        lines.append(
            f"query {res['query']!r}: live {res['live_version']} (dropped {res['live_dropped']})"
            f"  |  candidate {res['candidate_version']} (dropped {res['candidate_dropped']})"
        )
        for row in res["rows"]:
            left, right = _cell(row["live"], width), _cell(row["candidate"], width)
            moved = row["moved"]
            mark = "" if moved in (None, 0) else ("  new" if moved == "new" else f"  {moved:+d}")
            lines.append(f"{row['position']:>3}  {left:<{width}} | {right}{mark}")
        lines.append("")
    return "\n".join(lines)


def _cell(row: dict[str, Any] | None, width: int) -> str:
    if row is None:
        return ""
    rules = f" [{'; '.join(row['rules'])}]" if row["rules"] else ""
    text = f"{row['id']} {row['score']:.3f} {row['title']}"
    room = width - len(rules)
    if len(text) > room:
        text = text[: max(room - 1, 8)] + "…"
    return text + rules
