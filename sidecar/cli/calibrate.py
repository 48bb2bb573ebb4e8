"""`rerank-sidecar calibrate`: fit the scorer's raw score to P(relevant) on judged data."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast, get_args

import click

from sidecar.cli.common import config_option, settings_from
from sidecar.cli.judged import Judged, judged_options, model_option, with_model
from sidecar.errors import SidecarError
from sidecar.scoring.calibration import Method


@click.command("calibrate")
@judged_options
@config_option("settings (scorer, cache); default: the embedded default")
@model_option
@click.option(
    "--method",
    type=click.Choice(get_args(Method)),
    default="platt",
    show_default=True,
    help="Platt scaling (a logistic curve: keeps the model's score differences, which the "
    "rules' blend with the engine score reads) or isotonic regression (a free monotone "
    "step curve: flattens differences within a step)",
)
@click.option(
    "--relevant-min",
    type=float,
    default=None,
    help="labels >= this count as relevant (default: above the middle of the file's label "
    "range: CrowdFlower 1-4 -> 3 and 4, Home Depot 1-3 -> above 2)",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("calibration.json"),
    show_default=True,
    help="the calibration file (its reliability diagram goes beside it, as .png)",
)
def calibrate_command(
    judged: Judged,
    config: Path | None,
    model: str | None,
    method: str,
    relevant_min: float | None,
    out: Path,
) -> None:
    """Score every judged pair of DATA and fit a monotone map from the scorer's raw score to
    the probability that the pair is relevant; name the file in scorer.calibration."""
    from sidecar.evaluation.session import run_calibrate

    settings = with_model(settings_from(config), model)
    try:
        dataset, split = judged.part(judged.one())
        asyncio.run(
            run_calibrate(
                dataset,
                settings,
                out,
                cast(Method, method),
                judged.data,
                relevant_min=relevant_min,
                split=split,
                echo=lambda m: click.echo(m, err=True),
                show=click.echo,
            )
        )
    except SidecarError as exc:
        raise click.ClickException(exc.message) from exc
