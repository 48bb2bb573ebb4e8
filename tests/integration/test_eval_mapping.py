"""`rerank-sidecar eval --mapping`: the corpus index on a real engine is created from the given
template (how the templates' README measures stemming before and after), and the report says
which template it was."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from es_integration.templates import PRODUCTS_TEMPLATE
from sidecar.cli import main
from tests.integration.test_eval_command import judged_csv


def test_mapping_is_refused_on_the_embedded_engine(tmp_path: Path) -> None:
    data = tmp_path / "judged.csv"
    judged_csv(data)
    result = CliRunner().invoke(main, ["eval", str(data), "--mapping", str(PRODUCTS_TEMPLATE)])
    assert result.exit_code == 2 and "--mapping is for engine.kind" in result.output


@pytest.mark.engine
def test_eval_indexes_the_corpus_from_the_given_mapping(
    tmp_path: Path, engine: tuple[str, str]
) -> None:
    kind, url = engine
    data = tmp_path / "judged.csv"
    judged_csv(data)
    config = tmp_path / "settings.yaml"
    config.write_text(f"engine:\n  kind: {kind}\n  urls: ['{url}']\n", encoding="utf-8")
    out = tmp_path / "report"
    args = ["eval", str(data), "--config", str(config), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--mapping", str(PRODUCTS_TEMPLATE)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "judged.json").read_text())
    assert report["engine"] == kind and report["mapping"] == str(PRODUCTS_TEMPLATE)
    assert report["summary"]["overall"]["queries"] == 6
    index = "eval-judged"
    try:
        answer = httpx.get(f"{url}/{index}/_mapping", trust_env=False, timeout=10).json()
        properties = answer[index]["mappings"]["properties"]
        # products.json on every engine: the standard analyzer, no stemming, no `.cjk`
        assert properties["title"] == {"type": "text", "analyzer": "standard"}
        assert properties["description"]["type"] == "text"
        assert "analyzer" not in properties["description"]  # dynamic: the default, standard
    finally:
        httpx.delete(f"{url}/{index}", trust_env=False, timeout=10)
