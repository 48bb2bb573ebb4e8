"""`rerank-sidecar calibrate`, `rules tune` and `eval --calibration --rules` end to end on a small
judged file: fitted on one half of the queries, measured on the other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sidecar.cli import main
from sidecar.rules.store import DEFAULT_RULES
from tests.integration.test_eval_command import judged_csv

pytestmark = pytest.mark.slow


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_fit_on_one_half_measure_on_the_other(tmp_path: Path) -> None:
    data = tmp_path / "judged.csv"
    judged_csv(data)
    rules = tmp_path / "rules.yaml"
    rules.write_text(DEFAULT_RULES.read_text(encoding="utf-8"), encoding="utf-8")
    before = rules.read_bytes()
    cal = tmp_path / "cal.json"

    out = run("calibrate", str(data), "--half", "1", "--out", str(cal))
    assert "split by query (seed 0): half 1 of 2 kept, 3 queries" in out
    assert "ECE raw" in out and cal.with_suffix(".png").stat().st_size > 10_000
    fitted = json.loads(cal.read_text())
    assert fitted["method"] == "platt" and fitted["map"]["a"] > 0
    assert fitted["data"]["split"] == {"seed": 0, "half": 1, "of": 2, "queries": 3}
    assert fitted["data"]["pairs"] == 42 and len(fitted["data"]["query_digests"]) == 3
    assert fitted["quality"]["ece_calibrated"] < fitted["quality"]["ece_raw"]

    tuned = tmp_path / "tuned.yaml"
    out = run(
        "rules", "tune", str(data), "--half", "1", "--calibration", str(cal),
        "--rules", str(rules), "--out", str(tuned), "--folds", "3",
    )  # fmt: skip
    assert "vs model alone" in out and "3-fold cross-validated" in out and "suggested:" in out
    assert rules.read_bytes() == before  # the live file is never changed
    report = json.loads(tuned.with_suffix(".json").read_text())
    assert report["queries"] == 3 and report["scores"] == "calibrated"
    assert len(report["candidates"]) > 50 and len(report["cross_validated"]["chosen_per_fold"]) == 3
    assert tuned.read_text().startswith("# Suggested by `rerank-sidecar rules tune`")

    folder = tmp_path / "report"
    out = run(
        "eval", str(data), "--half", "2", "--calibration", str(cal), "--rules", str(tuned),
        "--out", str(folder),
    )  # fmt: skip
    assert "half 2 of 2 kept, 3 queries" in out and "warning" not in out
    assert "NDCG@10 tuned - model" in out and "ECE raw" in out
    result = json.loads((folder / "judged-half2.json").read_text())
    assert result["summary"]["orders"] == [
        "engine", "reranked", "calibrated", "tuned", "model", "random",
    ]  # fmt: skip
    assert result["calibration"]["overlap"] == 0 and result["calibration"]["pairs"] == 42
    assert (folder / "judged-half2-reliability.png").stat().st_size > 10_000
    assert "![reliability diagram]" in (folder / "judged-half2.md").read_text()


def test_tune_reproduces_what_eval_measures_through_the_pipeline(tmp_path: Path) -> None:
    """The tuner applies the rules offline; on the same queries its current file is the eval's
    reranked order and its model alone the eval's."""
    data = tmp_path / "judged.csv"
    judged_csv(data)
    tuned = tmp_path / "tuned.yaml"
    # raw scores, as eval's reranked order reads them (the default applies the shipped
    # calibration, which tune would read and eval show as its calibrated order)
    raw = tmp_path / "raw.yaml"
    raw.write_text("scorer:\n  calibration: null\n", encoding="utf-8")
    run("rules", "tune", str(data), "--out", str(tuned), "--folds", "2", "--config", str(raw))
    report = json.loads(tuned.with_suffix(".json").read_text())
    fixed = {r["name"]: r["ndcg@10"]["mean"] for r in report["fixed"]}
    run(
        "eval", str(data), "--rules", str(tuned), "--out", str(tmp_path / "report"),
        "--config", str(raw),
    )  # fmt: skip
    overall = json.loads((tmp_path / "report" / "judged.json").read_text())["summary"]["overall"]
    assert fixed["current file"] == pytest.approx(overall["reranked"]["ndcg@10"]["mean"])
    assert fixed["model alone"] == pytest.approx(overall["model"]["ndcg@10"]["mean"])
    best = report["candidates"][0]["ndcg@10"]["mean"]
    assert best == pytest.approx(overall["tuned"]["ndcg@10"]["mean"])


def test_tune_refuses_to_write_over_the_file_it_tunes(tmp_path: Path) -> None:
    data = tmp_path / "judged.csv"
    judged_csv(data)
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\n", encoding="utf-8")
    result = CliRunner().invoke(
        main, ["rules", "tune", str(data), "--rules", str(rules), "--out", str(rules)]
    )
    assert result.exit_code == 1 and "is the rules file being tuned" in result.output
    assert rules.read_text() == "version: 1\n"


def test_calibrate_names_a_label_rule_that_leaves_one_class(tmp_path: Path) -> None:
    data = tmp_path / "judged.csv"
    judged_csv(data)
    result = CliRunner().invoke(
        main, ["calibrate", str(data), "--relevant-min", "9", "--out", str(tmp_path / "c.json")]
    )
    assert result.exit_code == 1
    assert "every judged pair is irrelevant" in result.output and "--relevant-min" in result.output


def test_a_calibration_for_another_model_is_refused_by_eval(tmp_path: Path) -> None:
    data = tmp_path / "judged.csv"
    judged_csv(data)
    cal = tmp_path / "cal.json"
    run("calibrate", str(data), "--out", str(cal))
    body = json.loads(cal.read_text())
    body["score_identity"] = "0000000000000000"
    cal.write_text(json.dumps(body))
    result = CliRunner().invoke(
        main, ["eval", str(data), "--calibration", str(cal), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1 and "0000000000000000" in result.output
