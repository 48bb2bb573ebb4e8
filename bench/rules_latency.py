"""How long ranking by the rules takes per request: 100 candidates (the default window) through the
documented example rules (blend, drop, 2 boosts, a scoped boost, pins, buries, bands).

    .venv/bin/python -m bench.rules_latency [--window 100] [--repeat 2000]
"""

from __future__ import annotations

import argparse
import random
import re
import time
from pathlib import Path

from sidecar.rules import Candidate, apply, parse_rules

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args()
    doc = (ROOT / "docs" / "rules.md").read_text()
    found = re.search(r"```yaml\n(.*?)```", doc, re.S)
    assert found is not None
    rules = parse_rules(found[1]).rules
    rng = random.Random(7)
    candidates = [
        Candidate(
            id=f"p{i:05d}",
            engine_rank=i,
            engine_score=rng.uniform(1, 20),
            model_score=rng.random(),
            fields={
                "category": rng.choice(["Footwear", "Camping Gear", "Audio"]),
                "sales": rng.randint(0, 5000),
                "in_stock": rng.random() > 0.1,
                "rating": round(rng.uniform(3, 5), 1),
            },
        )
        for i in range(args.window)
    ]
    for _ in range(50):  # warm up
        apply(rules, candidates, "waterproof hiking boots")
    started = time.perf_counter()
    for _ in range(args.repeat):
        apply(rules, candidates, "waterproof hiking boots")
    per_call = (time.perf_counter() - started) / args.repeat
    print(f"rules.apply: {args.window} candidates, {per_call * 1e6:.0f} µs per request")


if __name__ == "__main__":
    main()
