"""The calibration shipped for the default model (sidecar/scoring/calibrations/minilm-default.json):
it belongs to the default MiniLM's score identity, the default configuration applies it, and a
configured model without one says so in /readyz and `rules check`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from sidecar.app import create_app
from sidecar.cli import main
from sidecar.rules.schema import RulesFile, probability_thresholds
from sidecar.rules.store import DEFAULT_RULES
from sidecar.scoring.calibration import BUNDLED_DIR, bundled_for, load_calibration
from sidecar.scoring.minilm import MiniLMScorer
from sidecar.wiring import build_services
from tests.conftest import make_settings

SHIPPED = BUNDLED_DIR / "minilm-default.json"


def test_the_shipped_file_is_the_default_models_and_says_how_it_was_fitted() -> None:
    calibration = load_calibration(SHIPPED)
    # A change of the bundled weights, the text limit, the scoring rule or the dtype changes
    # the default scorer's identity: refit with `python -m bench.fit_default_calibration`.
    assert calibration.score_identity == MiniLMScorer().score_identity, (
        "the default MiniLM's score identity changed: refit the shipped calibration"
    )
    assert bundled_for(MiniLMScorer().score_identity) == calibration
    data, quality = calibration.meta["data"], calibration.meta["quality"]
    assert {f["name"] for f in data["files"]} == {"crowdflower-dev.csv", "homedepot-dev.csv"}
    assert data["split"] == {"by": "query", "seed": 0, "half": 1, "of": 2}
    assert quality["cv"]["ece_calibrated"] < quality["ece_raw"]
    assert quality["held_out"]["ece_calibrated"] < quality["held_out"]["ece_raw"]
    text = SHIPPED.read_text(encoding="utf-8")
    assert "product_title" not in text or "columns" in text  # hashes of queries, no judged text
    assert calibration(0.2) < calibration(0.5) < calibration(0.8)


def test_another_identity_gets_no_shipped_calibration() -> None:
    assert bundled_for(MiniLMScorer(max_doc_chars=256).score_identity) is None


def test_the_default_configuration_serves_calibrated_scores_keeping_the_raw(
    client_factory: object,
) -> None:
    calibration = load_calibration(SHIPPED)
    client = client_factory()  # type: ignore[operator]
    body = {"query": "waterproof hiking boots", "product": {"title": "Waterproof hiking boots"}}
    explained = client.post("/api/explain", json=body).json()
    search = client.post("/search", json={"query": "waterproof hiking boots", "size": 5}).json()
    assert search["hits"] and all(0 < h["model_score"] < 1 for h in search["hits"])
    assert explained["calibration"] == calibration.version
    assert explained["score"] == pytest.approx(calibration(explained["raw_score"]))
    assert explained["score"] != pytest.approx(explained["raw_score"], abs=1e-3)
    model = client.get("/readyz").json()["model"]
    assert model["calibrated"] is True and model["calibration"]["source"] == "bundled"
    assert model["calibration"]["version"] == calibration.version


def test_the_default_services_hold_the_shipped_calibration(minilm: MiniLMScorer) -> None:
    services = build_services(make_settings(), scorer=minilm)
    assert services.scoring.calibration == load_calibration(SHIPPED)
    raw = build_services(make_settings(scorer={"calibration": None}), scorer=minilm)
    assert raw.scoring.calibration is None


def readyz_model(settings: dict[str, Any], scorer: MiniLMScorer) -> dict[str, Any]:
    app = create_app(make_settings(**settings), wait_for_model=True, scorer=scorer)
    with TestClient(app) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 200  # raw scores serve: readiness is not gated on them
    model: dict[str, Any] = answer.json()["model"]
    return model


def test_readyz_says_when_scores_are_raw(minilm: MiniLMScorer) -> None:
    model = readyz_model({"scorer": {"calibration": None}}, minilm)
    reason = model["calibration"]["reason"]
    assert model["calibrated"] is False and not model["reason"]  # the model's own: it loaded
    assert "scores are raw" in reason and "scorer.calibration is null" in reason
    assert "thresholds" in reason
    other = copy.copy(minilm)  # the same model under another identity (other weights, say)
    other.score_identity = "0123456789abcdef"
    model = readyz_model({}, other)
    assert model["calibrated"] is False
    assert (
        "no calibration ships for score identity 0123456789abcdef"
        in (model["calibration"]["reason"])
    )


def run_cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_rules_check_warns_of_probability_thresholds_on_raw_scores(tmp_path: Path) -> None:
    config = tmp_path / "raw.yaml"
    config.write_text("scorer:\n  calibration: null\n", encoding="utf-8")
    result = run_cli("rules", "check", str(DEFAULT_RULES), "--config", str(config))
    assert result.exit_code == 0 and result.output.strip().endswith(": ok")
    warning = next(line for line in result.output.splitlines() if "warning:" in line)
    assert "scores are raw" in warning and "drop.below_model_score 0.4" in warning
    assert "bands.strong >= 0.75" in warning
    assert "boosts.best-sellers: model_score >= 0.75" in warning
    strict = run_cli("rules", "check", str(DEFAULT_RULES), "--config", str(config), "--strict")
    assert strict.exit_code == 1 and "warning:" in strict.output
    calibrated = run_cli("rules", "check", str(DEFAULT_RULES), "--strict")  # the default
    assert calibrated.exit_code == 0 and "warning" not in calibrated.output


def test_rules_check_names_a_calibration_for_another_model(tmp_path: Path) -> None:
    config = tmp_path / "other.yaml"
    config.write_text("scorer:\n  max_doc_chars: 256\n", encoding="utf-8")
    result = run_cli("rules", "check", str(DEFAULT_RULES), "--config", str(config))
    assert result.exit_code == 0
    assert "no calibration ships for score identity" in result.output


def test_probability_thresholds_name_every_threshold_read_on_a_model_score() -> None:
    rules = RulesFile.model_validate(
        {
            "version": 1,
            "drop": {"below_model_score": None, "when": {"field": "blended_score", "lte": 0.2}},
            "buries": [{"name": "b", "when": {"any": [{"field": "model_score", "lte": 0.1}]}}],
            "boosts": [{"name": "s", "when": {"field": "sales", "gte": 10}, "add": 0.1}],
            "bands": [{"name": "top", "gte": 0.9}, {"name": "rest", "gte": 0.0}],
            "variants": [{"name": "v", "drop": {"below_model_score": 0.3}}],
        }
    )
    assert probability_thresholds(rules) == [
        "drop.when: blended_score <= 0.2",
        "buries.b: model_score <= 0.1",
        "bands.top >= 0.9",
        "variants.v.drop.below_model_score 0.3",
    ]
    plain = RulesFile.model_validate(
        {"version": 1, "drop": {"below_model_score": None}, "bands": [{"name": "all", "gte": 0}]}
    )
    assert probability_thresholds(plain) == []


@pytest.mark.parametrize("value", ["null", "", "None"])
def test_the_environment_turns_the_calibration_off(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("RERANK_SCORER__CALIBRATION", value)
    assert make_settings().scorer.calibration is None
    monkeypatch.setenv("RERANK_SCORER__CALIBRATION", "bundled")
    assert make_settings().scorer.calibration == "bundled"
