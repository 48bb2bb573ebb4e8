"""One rules file, two scorers whose raw scores live in different ranges: the CPU default
(MiniLM, a clipped cosine, here 0 to about 0.8) and the tiny random Qwen2.5-VL behind the Lychee
scorer (P("yes"), here about 0.46-0.50). Each is calibrated with `rerank-sidecar calibrate` on a
judged set made here, and then `drop: below_model_score: 0.4` drops at the same calibrated
probability on both, where on raw scores it means something else on each."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from sidecar.app import create_app
from sidecar.cli import main
from sidecar.demo import load_catalog, load_queries
from sidecar.scoring.calibration import Calibration, load_calibration
from sidecar.scoring.minilm import MiniLMScorer
from tests.conftest import make_settings
from tests.fixtures.tiny_qwen import build_tiny_qwen

pytestmark = pytest.mark.slow

THRESHOLD = 0.4
RULES = f"""version: 1
blend: {{model_weight: 1.0, engine_weight: 0.0}}
drop: {{below_model_score: {THRESHOLD}}}
variants:
  - {{name: keep-all, drop: {{below_model_score: null}}}}
"""
QUERIES = [family["query"] for family in load_queries()[:4]]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("two-scorers")
    catalog = root / "catalog.jsonl"
    with catalog.open("w", encoding="utf-8") as handle:
        for product in load_catalog():  # text only: the calibration is fitted on text
            handle.write(json.dumps({k: v for k, v in product.items() if k != "image_url"}) + "\n")
    rules = root / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    return {"root": root, "catalog": catalog, "rules": rules, "qwen": build_tiny_qwen(root / "q")}


def settings_for(setup: dict[str, Path], scorer: dict[str, Any]) -> Any:
    return make_settings(
        engine={"catalog": str(setup["catalog"])},
        rules={"path": str(setup["rules"]), "watch": False},
        scorer=scorer,
    )


@pytest.fixture(scope="module")
def scorers(setup: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return {
        "minilm": {"settings": {}, "model": "minilm"},
        "qwen": {
            "settings": {"kind": "lychee", "model_path": str(setup["qwen"])},
            "model": f"lychee:{setup['qwen']}",
        },
    }


@contextmanager
def client(setup: dict[str, Path], scorer: dict[str, Any], shared: Any) -> Iterator[TestClient]:
    app = create_app(settings_for(setup, scorer), wait_for_model=True, scorer=shared)
    with TestClient(app) as test_client:
        yield test_client


def window(test_client: TestClient, query: str, variant: str | None = None) -> dict[str, Any]:
    # the largest budget: every pair scored even on a busy machine (a fallback has no scores to
    # compare, and this test is about calibrated thresholds, not deadlines)
    body: dict[str, Any] = {"query": query, "size": 100, "window": 100, "timeout_ms": 30_000}
    if variant:
        body["rules"] = variant
    answer = test_client.post("/search", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def judged_set(
    path: Path, raw: list[tuple[str, dict[str, Any], float]], seed: int
) -> dict[str, bool]:
    """Labels a rater could have given: the higher the scorer's raw score, the likelier the
    pair is judged relevant (2) rather than not (1), rising from 0 to 1 over the raw ranks.
    Returns whether each pair ("query|id") was judged relevant."""
    ranked = sorted(raw, key=lambda r: r[2])
    rng = random.Random(seed)
    judged = {}
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["query", "product_id", "product_title", "product_description", "label"])
        for rank, (query, product, _) in enumerate(ranked):
            relevant = rng.random() < rank / (len(ranked) - 1)
            points = " | ".join(product["selling_points"])  # the same text the catalog gives
            writer.writerow([query, product["id"], product["title"], points, 2 if relevant else 1])
            judged[f"{query}|{product['id']}"] = relevant
    return judged


def crossing(calibration: Calibration, low: float = 0.0, high: float = 1.0) -> float:
    """The raw score where the calibration reaches THRESHOLD (bisection: it is increasing)."""
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if calibration(mid) < THRESHOLD else (low, mid)
    return (low + high) / 2


def test_one_rules_file_drops_at_the_same_calibrated_probability_on_both(
    setup: dict[str, Path], scorers: dict[str, dict[str, Any]], minilm: MiniLMScorer
) -> None:
    catalog = {p["id"]: p for p in load_catalog()}
    seen: dict[str, dict[str, Any]] = {}
    for seed, (name, spec) in enumerate(scorers.items()):
        shared = minilm if name == "minilm" else None
        # 1. raw scores of every window hit, through the sidecar with no calibration
        raw: list[tuple[str, dict[str, Any], float]] = []
        raw_dropped = 0
        # (calibration null: the default would apply the minilm's shipped one)
        with client(setup, {**spec["settings"], "calibration": None}, shared) as test_client:
            for query in QUERIES:
                hits = window(test_client, query, "keep-all")["hits"]
                raw += [(query, catalog[h["id"]], h["model_score"]) for h in hits]
                raw_dropped += window(test_client, query)["dropped"]
        # 2. a judged set made from them, and `rerank-sidecar calibrate` on it
        data = setup["root"] / f"{name}.csv"
        relevant = judged_set(data, raw, seed)
        out = setup["root"] / f"{name}.json"
        result = CliRunner().invoke(
            main, ["calibrate", str(data), "--model", spec["model"], "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        assert "ECE raw" in result.output and out.with_suffix(".png").stat().st_size > 10_000
        calibration = load_calibration(out)
        # 3. the same rules, on calibrated scores
        calibrated: dict[str, float] = {}
        kept: set[str] = set()
        dropped = 0
        with_calibration = {**spec["settings"], "calibration": str(out)}
        with client(setup, with_calibration, shared) as test_client:
            for query in QUERIES:
                every = window(test_client, query, "keep-all")["hits"]
                calibrated |= {f"{query}|{h['id']}": h["model_score"] for h in every}
                answer = window(test_client, query)
                kept |= {f"{query}|{h['id']}" for h in answer["hits"]}
                dropped += answer["dropped"]
        raws = [r[2] for r in raw]
        seen[name] = {
            "raw_range": (min(raws), max(raws)),
            "raw_dropped": raw_dropped,
            "crossing": crossing(calibration),
            "calibrated": calibrated,
            "kept": kept,
            "dropped": dropped,
            "calibration": calibration,
            "raw": {f"{q}|{p['id']}": s for q, p, s in raw},
            "relevant": relevant,
        }

    for name, s in seen.items():
        below = {k for k, v in s["calibrated"].items() if v < THRESHOLD}
        # kept exactly where the calibrated probability is at least 0.4, on both scorers
        assert s["kept"] == set(s["calibrated"]) - below, name
        assert s["dropped"] == len(below) > 0 and s["kept"], (name, s["dropped"])
        # and the calibrated score is the calibration of the raw score the cache holds
        for key, value in list(s["calibrated"].items())[:20]:
            assert value == pytest.approx(s["calibration"](s["raw"][key]), abs=1e-6)
        # what "below 0.4" means now: fewer than 4 in 10 such pairs were judged relevant
        share_dropped = sum(s["relevant"][k] for k in below) / len(below)
        share_kept = sum(s["relevant"][k] for k in s["kept"]) / len(s["kept"])
        assert share_dropped < THRESHOLD < share_kept, (name, share_dropped, share_kept)

    minilm_s, qwen_s = seen["minilm"], seen["qwen"]
    # the raw scores live in different ranges: Qwen's all sit above 0.4, so raw, the rule
    # dropped nothing there; calibrated, it drops on both
    assert qwen_s["raw_range"][0] > THRESHOLD and qwen_s["raw_dropped"] == 0
    assert qwen_s["raw_range"][1] - qwen_s["raw_range"][0] < 0.2
    assert minilm_s["raw_range"][1] - minilm_s["raw_range"][0] > 0.3
    # one calibrated threshold, two raw cut points, each inside its own scorer's range
    for s in (minilm_s, qwen_s):
        assert s["raw_range"][0] < s["crossing"] < s["raw_range"][1]
    assert minilm_s["raw_dropped"] > 0  # raw, the same rule drops on one scorer only
