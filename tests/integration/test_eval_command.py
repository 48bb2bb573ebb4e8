"""`rerank-sidecar eval` end to end on a small judged file: embedded engine, MiniLM, rules."""

import json

from click.testing import CliRunner

from sidecar.cli import main
from sidecar.demo import load_catalog, load_queries


def judged_csv(path) -> None:
    """Judgments from the demo catalog's query families: relevant 4, near misses 1."""
    catalog = {p["id"]: p for p in load_catalog()}
    lines = ["query,product_title,product_description,median_relevance"]
    for family in load_queries()[:6]:
        for pid, label in [
            *((i, 4) for i in family["relevant_ids"][:6]),
            *((i, 1) for i in family["near_miss_ids"][:8]),
        ]:
            p = catalog[pid]
            points = " ".join(p["selling_points"]).replace('"', "'")
            lines.append(f'{family["query"]},"{p["title"]}","{points}",{label}')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_eval_writes_report_and_reranking_beats_random(tmp_path) -> None:
    data = tmp_path / "judged.csv"
    judged_csv(data)
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["eval", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "ndcg@10" in result.output and "overall" in result.output
    report = json.loads((out / "judged.json").read_text())
    overall = report["summary"]["overall"]
    assert overall["queries"] == 6
    assert overall["model"]["ndcg@10"]["mean"] > overall["random"]["ndcg@10"]["mean"]
    low, high = overall["reranked"]["ndcg@10"]["ci95"]
    assert low <= overall["reranked"]["ndcg@10"]["mean"] <= high
    assert 0 <= overall["reranked_vs_engine"]["p_value"] <= 1
    assert (out / "judged.png").stat().st_size > 10_000
    assert "![NDCG@10" in (out / "judged.md").read_text()


def test_eval_without_a_file_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["eval"])
    assert result.exit_code == 2 and "give at least one CSV" in result.output


def test_eval_on_a_real_engine(tmp_path, engine) -> None:
    kind, url = engine
    data = tmp_path / "judged.csv"
    judged_csv(data)
    config = tmp_path / "settings.yaml"
    config.write_text(f"engine:\n  kind: {kind}\n  urls: ['{url}']\n", encoding="utf-8")
    out = tmp_path / "report"
    result = CliRunner().invoke(
        main, ["eval", str(data), "--config", str(config), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "judged.json").read_text())
    assert report["engine"] == kind
    overall = report["summary"]["overall"]
    assert overall["queries"] == 6
    assert overall["model"]["ndcg@10"]["mean"] > overall["random"]["ndcg@10"]["mean"]


def test_the_report_singles_out_queries_whose_window_holds_every_judged_product(tmp_path) -> None:
    data = tmp_path / "judged.csv"
    judged_csv(data)
    out = tmp_path / "report"
    args = ["eval", str(data), "--out", str(out), "--retrieval", "lexical"]
    result = CliRunner().invoke(main, [*args, "--retrieval", "hybrid"])
    assert result.exit_code == 0, result.output
    for retrieval in ("lexical", "hybrid"):
        report = json.loads((out / retrieval / "judged.json").read_text())
        complete = [q for q in report["queries"] if q["missed"] == 0]
        block = report["summary"]["complete_window"]
        assert block["queries"] == len(complete)
        if complete:
            mean = sum(q["metrics"]["model"]["ndcg@10"] for q in complete) / len(complete)
            assert abs(block["model"]["ndcg@10"]["mean"] - mean) < 1e-9
    # the vector leg reaches every judged product: no query's window lacks one
    hybrid = json.loads((out / "hybrid" / "judged.json").read_text())
    assert hybrid["summary"]["complete_window"]["queries"] == 6
    assert "found every judged product (6 of 6 queries)" in result.output
