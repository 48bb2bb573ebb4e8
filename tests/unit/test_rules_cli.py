"""`rerank-sidecar rules check` and `rules preview` as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sidecar.cli import main
from sidecar.rules.store import DEFAULT_RULES


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_check_passes_the_default_rules() -> None:
    result = run("rules", "check", str(DEFAULT_RULES))
    assert result.exit_code == 0 and result.output.strip().endswith(": ok")


def test_check_prints_every_error_with_line_column_path_and_reason(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "version: 1\n"
        "blend: {model_wieght: 0.5}\n"
        "pins:\n"
        "  - {name: p, query: {regex: '(x'}, id: a, position: 1}\n"
    )
    result = run("rules", "check", str(path))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert f"{path}:2:9: blend.model_wieght: unknown key 'model_wieght'" in lines
    assert any(
        line.startswith(f"{path}:4:15: pins[0].query: regex does not compile") for line in lines
    )


def test_check_with_config_rejects_fields_outside_the_field_map(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("fields:\n  business: [sales, category]\n")
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\ndrop:\n  when: {field: stock, eq: 0}\n")
    result = run("rules", "check", str(rules), "--config", str(config))
    assert result.exit_code == 1
    assert f"{rules}:2:1: drop: field 'stock' is not in the field map" in result.output
    assert run("rules", "check", str(rules)).exit_code == 0


def test_check_of_a_missing_file(tmp_path: Path) -> None:
    result = run("rules", "check", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1 and "cannot read file" in result.output


@pytest.mark.slow
def test_preview_runs_the_real_pipeline_side_by_side(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    # the candidate is the live (bundled) rules, then the same with a pin: only the pin moves
    bundled = DEFAULT_RULES.read_text(encoding="utf-8")
    rules.write_text(bundled)
    plain = run("rules", "preview", str(rules), "--query", "Yoga  mat", "--size", "5", "--json")
    assert plain.exit_code == 0, plain.output
    rows = json.loads(plain.stdout)[0]["rows"]
    assert [r["live"]["id"] for r in rows] == [r["candidate"]["id"] for r in rows]
    fifth = rows[4]["live"]["id"]

    rules.write_text(
        bundled + f"pins: [{{name: hero, query: {{is: yoga mat}}, id: {fifth}, position: 1}}]\n"
    )
    result = run(
        "rules", "preview", str(rules), "--query", "yoga mat", "--query", "tent",
        "--size", "5", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [r["query"] for r in out] == ["yoga mat", "tent"]
    yoga, tent = out
    assert [r["live"]["id"] for r in yoga["rows"]] == [r["live"]["id"] for r in rows]
    assert yoga["rows"][0]["candidate"] == {**rows[4]["live"], "rules": ["pin:hero position 1"]}
    assert yoga["rows"][0]["moved"] == 4 and yoga["candidate_version"] != yoga["live_version"]
    assert all(r["moved"] == 0 for r in tent["rows"])  # the pin is for another query

    text = run("rules", "preview", str(rules), "--query", "yoga mat", "--size", "5")
    assert text.exit_code == 0
    assert "query 'yoga mat': live default@" in text.stdout
    assert f"| {fifth}" in text.stdout and "[pin:hero position 1]  +4" in text.stdout


def test_preview_of_an_invalid_file_prints_its_errors(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text("version: 1\nboosts: 3\n")
    result = run("rules", "preview", str(rules), "--query", "tent")
    assert result.exit_code == 1 and f"{rules}:2:1: boosts:" in result.output


def test_check_of_a_file_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    rules = tmp_path / "latin1.yaml"
    rules.write_bytes(b"version: 1\n# caf\xe9\n")
    result = run("rules", "check", str(rules))
    assert result.exit_code == 1
    assert f"{rules}:2:6: not UTF-8: byte 0xe9" in result.output
