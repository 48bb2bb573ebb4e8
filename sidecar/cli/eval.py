"""`rerank-sidecar eval`: load judged data, index it, evaluate, print and write the report."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from sidecar.cli.common import config_option, settings_from
from sidecar.cli.judged import Judged, judged_options, model_option, with_model
from sidecar.config import Settings
from sidecar.errors import SidecarError


@click.command("eval")
@judged_options
@config_option("settings (engine, scorer, cache, rules); default: the embedded default")
@model_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("eval-report"),
    show_default=True,
    help="report folder",
)
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="a candidate rules file (e.g. from `rules tune`): the report's `tuned` order, beside "
    "`reranked` with the configured rules",
)
@click.option(
    "--calibration",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="a calibration file (from `calibrate`; default: scorer.calibration): adds the "
    "`calibrated` order, the reliability diagram and the ECE before and after",
)
@click.option(
    "--mapping",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="index settings+mappings JSON for the corpus on Elasticsearch/OpenSearch (default: the "
    "template `rerank-sidecar index` picks for the engine)",
)
@click.option(
    "--retrieval",
    type=click.Choice(["lexical", "hybrid"]),
    multiple=True,
    help="the first stage: the engine's text search alone, or with the vector leg fused "
    "(default: hybrid.enabled of the settings); the corpus is indexed with vectors for hybrid. "
    "Given twice, both run on one loaded model, each into OUT/<retrieval>",
)
def eval_command(
    judged: Judged,
    config: Path | None,
    model: str | None,
    out: Path,
    rules_path: Path | None,
    calibration: Path | None,
    mapping: Path | None,
    retrieval: tuple[str, ...],
) -> None:
    """NDCG@10, MRR and Recall@10 of engine, reranked, model-alone and random orders on judged
    data (with calibrated and tuned orders when asked)."""
    settings = with_model(settings_from(config), model)
    runs = [(settings, out)]
    if retrieval:
        runs = [
            (
                settings.model_copy(
                    update={"hybrid": settings.hybrid.model_copy(update={"enabled": r == "hybrid"})}
                ),
                out / r if len(retrieval) > 1 else out,
            )
            for r in dict.fromkeys(retrieval)
        ]
    if mapping is not None and settings.engine.kind == "embedded":
        raise click.UsageError("--mapping is for engine.kind elasticsearch or opensearch")
    try:
        asyncio.run(_evaluate(judged, runs, calibration, rules_path, mapping))
    except SidecarError as exc:
        raise click.ClickException(exc.message) from exc


async def _evaluate(
    judged: Judged,
    runs: list[tuple[Settings, Path]],
    calibration: Path | None,
    rules_path: Path | None,
    mapping: Path | None,
) -> None:
    """Each dataset under each run's settings; several runs share one loaded model."""
    from sidecar.evaluation.session import run_eval
    from sidecar.wiring import build_scorer

    scorer = build_scorer(runs[0][0]) if len(runs) > 1 else None
    try:
        for dataset in judged.datasets():
            part, split = judged.part(dataset)
            for settings, out in runs:
                await run_eval(
                    part,
                    settings,
                    out,
                    echo=lambda m: click.echo(m, err=True),
                    show=click.echo,
                    calibration=calibration,
                    rules=rules_path,
                    split=split,
                    mapping=mapping,
                    scorer=scorer,
                )
    finally:
        if scorer is not None:
            await scorer.close()
