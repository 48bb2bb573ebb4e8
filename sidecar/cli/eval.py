"""`rerank-sidecar eval`: load judged data, index it, evaluate, print and write the report."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from sidecar.cli.common import config_option, settings_from
from sidecar.errors import SidecarError


@click.command("eval")
@click.argument("data", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_option("settings (engine, scorer, cache, rules); default: the embedded default")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("eval-report"),
    show_default=True,
    help="report folder",
)
@click.option(
    "--trec",
    is_flag=True,
    help="DATA is QUERIES.tsv CORPUS.jsonl QRELS.tsv (TREC style) instead of CSV files",
)
@click.option("--query-column", default=None, help="CSV column of the query (detected)")
@click.option("--title-column", default=None, help="CSV column of the product title (detected)")
@click.option(
    "--text-column", default=None, help="CSV column of the product description (detected; optional)"
)
@click.option("--label-column", default=None, help="CSV column of the label (detected)")
@click.option("--id-column", default=None, help="CSV column of the product id (detected)")
@click.option("--type-column", default=None, help="CSV column of the query type (optional)")
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="rules file to evaluate with (default: the configured rules)",
)
def eval_command(
    data: tuple[Path, ...],
    config: Path | None,
    out: Path,
    trec: bool,
    query_column: str | None,
    title_column: str | None,
    text_column: str | None,
    label_column: str | None,
    id_column: str | None,
    type_column: str | None,
    rules_path: Path | None,
) -> None:
    """NDCG@10, MRR and Recall@10 of engine, reranked and random orders on judged data."""
    from sidecar.evaluation.data import load_csv, load_trec
    from sidecar.evaluation.session import run_eval

    if not data:
        raise click.UsageError("give at least one CSV file (or --trec QUERIES CORPUS QRELS)")
    settings = settings_from(config)
    if rules_path is not None:
        settings = settings.model_copy(
            update={"rules": settings.rules.model_copy(update={"path": rules_path, "watch": False})}
        )
    try:
        if trec:
            if len(data) != 3:
                raise click.UsageError("--trec takes three files: QUERIES CORPUS QRELS")
            datasets = [load_trec(*data)]
        else:
            datasets = [
                load_csv(
                    path,
                    query=query_column,
                    title=title_column,
                    text=text_column,
                    label=label_column,
                    product_id=id_column,
                    query_type=type_column,
                )
                for path in data
            ]
        for dataset in datasets:
            asyncio.run(
                run_eval(
                    dataset, settings, out, echo=lambda m: click.echo(m, err=True), show=click.echo
                )
            )
    except SidecarError as exc:
        raise click.ClickException(exc.message) from exc
