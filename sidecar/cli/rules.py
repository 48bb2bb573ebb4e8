"""`rerank-sidecar rules check|preview|tune`: a merchandiser's tools for a rules file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from sidecar.cli.common import config_option, loaded_services, settings_from
from sidecar.cli.judged import Judged, judged_options, model_option, with_model
from sidecar.config import Settings
from sidecar.errors import ConfigError, SidecarError
from sidecar.rules.loader import LoadedRules

_CONFIG = config_option(
    "Sidecar settings (field map; for preview also engine, model and the live rules)."
)


@click.group("rules")
def rules() -> None:
    """Check, preview and tune merchandising rules files."""


@rules.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_CONFIG
@click.option(
    "--strict",
    is_flag=True,
    help="exit 1 on warnings too (thresholds read on an uncalibrated model's raw scores)",
)
def check(file: Path, config: Path | None, strict: bool) -> None:
    """Validate FILE; print each error as file:line:col: path: reason (exit 1 on errors).
    With --config, conditions must read fields of the configured field map. Warns when the
    configured model's scores are not calibrated while FILE's thresholds assume probabilities."""
    from sidecar.rules.loader import RulesError, check_rules, parse_rules, read_rules_text
    from sidecar.rules.schema import probability_thresholds

    try:
        text = read_rules_text(file)
    except RulesError as exc:  # unreadable, or not UTF-8: said like any other problem
        for problem in exc.problems:
            click.echo(str(problem))
        raise SystemExit(1) from exc
    settings = settings_from(config)
    known = settings.fields.business if config is not None else None
    problems = check_rules(text, str(file), known)
    for problem in problems:
        click.echo(str(problem))
    if problems:
        click.echo(f"{len(problems)} error(s) in {file}", err=True)
        raise SystemExit(1)
    thresholds = probability_thresholds(parse_rules(text, str(file)).rules)
    warning = _uncalibrated(settings, thresholds) if thresholds else None
    if warning:
        click.echo(f"{file}: warning: {warning}", err=True)
    if warning and strict:
        raise SystemExit(1)
    click.echo(f"{file}: ok")


def _uncalibrated(settings: Settings, thresholds: list[str]) -> str | None:
    """The warning for thresholds read on raw scores; None when scores are calibrated."""
    from sidecar.wiring import configured_calibration

    try:
        state = asyncio.run(configured_calibration(settings))
    except ConfigError as exc:
        return f"cannot tell whether scores are calibrated ({exc.message})"
    if state["calibrated"]:
        return None
    return (
        f"scorer {settings.scorer.kind} ({settings.scorer.model_path or 'its default weights'})"
        f" has no calibration: {state['reason']}; thresholds read as probabilities: "
        + "; ".join(thresholds)
    )


@rules.command("preview")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--query", "queries", multiple=True, required=True, help="A query (repeatable).")
@click.option("--size", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option("--window", type=click.IntRange(min=1), default=None)
@click.option("--variant", default=None, help="Preview this variant of FILE.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@_CONFIG
def preview_command(
    file: Path,
    queries: tuple[str, ...],
    size: int,
    window: int | None,
    variant: str | None,
    as_json: bool,
    config: Path | None,
) -> None:
    """Run queries with the live rules and with FILE; show both orders side by side."""
    from sidecar.operations.preview import render_text
    from sidecar.rules.loader import RulesError, load_rules

    try:
        candidate = load_rules(file)
    except RulesError as exc:
        for problem in exc.problems:
            click.echo(str(problem))
        raise SystemExit(1) from exc
    try:
        if variant:
            candidate = candidate.select(variant)
        results = asyncio.run(_preview(candidate, list(queries), size, window, config))
    except ConfigError as exc:
        raise click.ClickException(exc.message) from exc
    except click.ClickException:
        raise
    except Exception as exc:  # e.g. an unknown variant, an engine that is down
        message = getattr(exc, "message", str(exc))
        raise click.ClickException(f"{exc.__class__.__name__}: {message}") from exc
    click.echo(json.dumps(results, indent=2) if as_json else render_text(results))


async def _preview(
    candidate: LoadedRules, queries: list[str], size: int, window: int | None, config: Path | None
) -> list[dict[str, object]]:
    from sidecar.operations.preview import preview

    async with loaded_services(settings_from(config)) as services:
        return await preview(services, candidate, queries, size, window)


@rules.command("tune")
@judged_options
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="the rules file to tune (default: the configured rules); it is never changed",
)
@click.option(
    "--calibration",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="tune on calibrated scores (default: scorer.calibration, else raw scores)",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="the suggested rules file (default: ./<rules name>.tuned.yaml)",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="every candidate's numbers as JSON (default: the --out file with .json)",
)
@click.option("--folds", type=click.IntRange(2, 20), default=5, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the folds")
@_CONFIG
@model_option
def tune_command(
    judged: Judged,
    rules_path: Path | None,
    calibration: Path | None,
    out: Path | None,
    report: Path | None,
    folds: int,
    seed: int,
    config: Path | None,
    model: str | None,
) -> None:
    """Grid-search the blend (model and engine weights, engine normalization) and the drop
    threshold of a rules file for the best NDCG@10 on judged DATA, with query-disjoint k-fold
    cross-validation; print each candidate against the current file and the model alone, and
    write the suggested file with its diff. Boosts, pins, buries and bands are kept."""
    from sidecar.evaluation.session import run_tune
    from sidecar.rules.loader import RulesError
    from sidecar.rules.store import DEFAULT_RULES

    settings = with_model(settings_from(config), model)
    source = rules_path or settings.rules.path or DEFAULT_RULES
    out = out or Path(f"{source.stem}.tuned.yaml")
    try:
        dataset, split = judged.part(judged.one())
        asyncio.run(
            run_tune(
                dataset,
                settings,
                source,
                out,
                report or out.with_suffix(".json"),
                calibration=calibration,
                folds=folds,
                seed=seed,
                split=split,
                echo=lambda m: click.echo(m, err=True),
                show=click.echo,
            )
        )
    except RulesError as exc:
        for problem in exc.problems:
            click.echo(str(problem))
        raise SystemExit(1) from exc
    except SidecarError as exc:
        raise click.ClickException(exc.message) from exc
