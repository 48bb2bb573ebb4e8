"""How often a query that names a product gets one of that product's accessories as its top hit,
on the demo catalog: the engine alone (lexical, and the hybrid first stage that is the default),
reranked by the default model with the rules as they were before product types (no type rule),
and reranked with the bundled rules (accessories of the named product buried), on the hybrid
first stage and on the lexical one.

    .venv/bin/python -m bench.accessory_first [--json out.json] [--window 100]

The query families are built from the catalog, not written by hand: for every product type that
has accessories or consumables among the catalog's products (hiking boots: waterproofing spray,
insoles, laces; espresso machine: descaler, beans...), each of its names in the vocabulary
(`sidecar/demo/product_types.json`: the type's name and synonyms, English and Chinese) is a
query. A query counts as "accessory first" when its top hit is an accessory or consumable of the
type it names, "product first" when the top hit is of that type.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from sidecar.backends.base import Hit
from sidecar.config import Settings
from sidecar.demo import PRODUCT_TYPES_PATH, load_catalog
from sidecar.documents import from_hit
from sidecar.product_types import TypeMatcher, load
from sidecar.retrieval import Retrieval
from sidecar.rules import LoadedRules, parse_rules
from sidecar.rules.store import DEFAULT_RULES
from sidecar.scoring.base import WarmsDocuments
from sidecar.services import Services, operator_deadline, params_for
from sidecar.wiring import build_services, close_services, give_vectors, load_model

TYPE_RULE = re.compile(r"buries:\n(?:  #.*\n)*  - name: accessories-after-products\n(?:    .*\n)+")


def families(matcher: TypeMatcher, catalog: list[dict]) -> list[tuple[str, str]]:
    """(query, the type it names) for every name of every type with accessories in the catalog."""
    have = Counter(p.get("product_type") for p in catalog)
    out = []
    for name, kind in matcher.types.items():
        served = {t.name for t in matcher.types.values() if name in t.accessory_of}
        if kind.role != "product" or not any(have[s] for s in served) or not have[name]:
            continue
        for phrase in (name, *kind.synonyms):
            named = matcher.recognise(phrase)
            if named is not None and named.name == name:  # a name another type's shadows: skip
                out.append((phrase, name))
    return out


def without_type_rule(default: str) -> LoadedRules:
    """The bundled rules less the type rule: ranking as it was before product types."""
    text, removed = TYPE_RULE.subn("", default)
    if removed != 1:
        raise SystemExit("the bundled rules changed: cannot find the type rule to leave out")
    return parse_rules(text, "bundled rules without the type rule")


async def measure(window: int) -> dict[str, Any]:
    catalog = load_catalog()
    matcher = load(PRODUCT_TYPES_PATH)
    services: Services = build_services(Settings(rules={"watch": False}))
    try:
        await load_model(services)
        if isinstance(services.scorer, WarmsDocuments):  # as serving does once at start-up
            settings = services.settings
            services.scorer.warm_documents(
                [from_hit(Hit(p["id"], 0.0, p), settings.fields) for p in catalog]
            )
        await give_vectors(services)  # the embedded engine's vector leg, as at start-up
        by_id = {p["id"]: p for p in catalog}
        bundled = services.rules.current
        no_type_rule = without_type_rule(DEFAULT_RULES.read_text(encoding="utf-8"))
        # mode -> (rules, first stage); None rules: the engine's own top hit
        modes: dict[str, tuple[LoadedRules | None, Retrieval]] = {
            "engine, lexical": (None, "lexical"),
            "engine, hybrid": (None, "hybrid"),
            "reranked, no type rule": (no_type_rule, "hybrid"),
            "reranked, bundled rules": (bundled, "hybrid"),
            "bundled rules, lexical": (bundled, "lexical"),
        }
        counts: dict[str, Counter[str]] = {m: Counter() for m in modes}
        rows: list[dict[str, Any]] = []
        skipped: list[str] = []
        for query, kind in families(matcher, catalog):
            served = matcher.recognise(query)
            assert served is not None
            found = await services.backend.search(
                services.settings.engine.default_index, query, (), 1, operator_deadline(services)
            )
            if not found.hits:  # the engine does not answer it: nothing to rank
                skipped.append(query)
                continue
            row: dict[str, Any] = {"query": query, "type": kind}
            for mode, (rules, retrieval) in modes.items():
                params = replace(params_for(services, query, 1, window), retrieval=retrieval)
                if rules is None:  # the whole window: RRF's top over 1 hit a leg is the lexical one
                    got = await services.pipeline.retriever.search(
                        params.index,
                        query,
                        (),
                        window,
                        operator_deadline(services),
                        asked=retrieval,
                    )
                    ran, why, hits = got.retrieval, got.reason, got.result.hits
                    top = hits[0].source.get("id", hits[0].id) if hits else None
                else:
                    outcome = await services.pipeline.search(
                        replace(params, rules=rules), operator_deadline(services)
                    )
                    ran, why = outcome.retrieval, outcome.retrieval_reason
                    top = outcome.hits[0].document.id if outcome.hits else None
                if ran != retrieval and not why.startswith("the scorer"):  # never a silent swap
                    raise SystemExit(f"{mode}: {query!r} ran {ran}: {why}")
                top_type = by_id[top]["product_type"] if top in by_id else None
                verdict = (
                    "product"
                    if top_type == kind
                    else "accessory"
                    if top_type in served.accessories
                    else "other"
                )
                counts[mode][verdict] += 1
                row[mode] = f"{top} ({top_type})"
            rows.append(row)
        return {
            "queries": len(rows),
            "counts": {m: dict(c) for m, c in counts.items()},
            "not_answered_by_the_engine": skipped,
            "rows": rows,
        }
    finally:
        await close_services(services)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--json", type=Path, help="write every query's top hits here")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.window))
    n = result["queries"]
    print(
        f"{n} queries naming a product type with accessories in the demo catalog "
        f"({len(result['not_answered_by_the_engine'])} more the engine finds nothing for)"
    )
    print(f"{'':26} {'accessory first':>16} {'product first':>14} {'other first':>12}")
    for mode, c in result["counts"].items():
        acc, prod, other = (c.get(k, 0) for k in ("accessory", "product", "other"))
        shares = f"{acc:>7} ({acc / n:4.0%}) {prod:>6} ({prod / n:4.0%})"
        print(f"{mode:26} {shares} {other:>5} ({other / n:4.0%})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
