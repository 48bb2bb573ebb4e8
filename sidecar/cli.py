"""The `rerank-sidecar` command: serve, demo, and the operator tools that grow beside them."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sidecar.config import load_settings
from sidecar.errors import ConfigError, SidecarError


@click.group()
def main() -> None:
    """Multimodal reranking sidecar for Elasticsearch and OpenSearch."""


def _serve(config: Path | None, host: str | None, port: int | None) -> None:
    import uvicorn

    from sidecar.app import create_app
    from sidecar.observability import logging as json_logs

    json_logs.configure()  # JSON lines on stderr, request id on every line
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from exc
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = settings.model_copy(update=overrides)
    click.echo(
        f"rerank-sidecar: engine={settings.engine.kind} scorer={settings.scorer.kind} "
        f"cache={settings.cache.kind} on http://{settings.host}:{settings.port}",
        err=True,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        log_config=json_logs.uvicorn_log_config(),
        access_log=False,  # the request middleware writes one JSON line per request
    )


@main.command()
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML settings file (environment RERANK_* overrides it).",
)
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8080).")
def serve(config: Path | None, host: str | None, port: int | None) -> None:
    """Run the sidecar with a configuration file."""
    _serve(config, host, port)


@main.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8080).")
def demo(host: str | None, port: int | None) -> None:
    """Run on the embedded default: demo catalog, in-process cache, MiniLM on the CPU."""
    _serve(None, host, port)


@main.command("eval")
@click.argument("data", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="settings (engine, scorer, cache, rules); default: the embedded default")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("eval-report"), show_default=True, help="report folder")
@click.option("--trec", is_flag=True,
              help="DATA is QUERIES.tsv CORPUS.jsonl QRELS.tsv (TREC style) instead of CSV files")
@click.option("--query-column", default=None, help="CSV column of the query (detected)")
@click.option("--title-column", default=None, help="CSV column of the product title (detected)")
@click.option("--text-column", default=None,
              help="CSV column of the product description (detected; optional)")
@click.option("--label-column", default=None, help="CSV column of the label (detected)")
@click.option("--id-column", default=None, help="CSV column of the product id (detected)")
@click.option("--type-column", default=None, help="CSV column of the query type (optional)")
@click.option("--rules", "rules_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="rules file to evaluate with (default: the configured rules)")
def eval_command(data: tuple[Path, ...], config: Path | None, out: Path, trec: bool,
                 query_column: str | None, title_column: str | None, text_column: str | None,
                 label_column: str | None, id_column: str | None, type_column: str | None,
                 rules_path: Path | None) -> None:
    """NDCG@10, MRR and Recall@10 of engine, reranked and random orders on judged data."""
    from sidecar.evaluation.command import run
    from sidecar.evaluation.data import load_csv, load_trec

    if not data:
        raise click.UsageError("give at least one CSV file (or --trec QUERIES CORPUS QRELS)")
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from exc
    if rules_path is not None:
        settings = settings.model_copy(update={"rules": settings.rules.model_copy(
            update={"path": rules_path, "watch": False})})
    try:
        if trec:
            if len(data) != 3:
                raise click.UsageError("--trec takes three files: QUERIES CORPUS QRELS")
            datasets = [load_trec(*data)]
        else:
            datasets = [load_csv(path, query=query_column, title=title_column, text=text_column,
                                 label=label_column, product_id=id_column, query_type=type_column)
                        for path in data]
    except SidecarError as exc:
        raise click.ClickException(exc.message) from exc
    for dataset in datasets:
        run(dataset, settings, out)


@main.command("index")
@click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="settings (engine URLs, auth, TLS, default index, field map)")
@click.option("--engine", type=click.Choice(["elasticsearch", "opensearch"]), default=None,
              help="engine kind (default: engine.kind of the settings)")
@click.option("--url", default=None, help="engine URL (default: the first of engine.urls)")
@click.option("--catalog", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="JSONL catalog, one product a line (default: the demo catalog)")
@click.option("--index", "index_name", default=None, help="index (default: engine.default_index)")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="index settings+mappings JSON (default: templates/products.json)")
@click.option("--recreate", is_flag=True, help="delete the index first if it exists")
@click.option("--replicas", type=int, default=None, help="number_of_replicas (template: 0)")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.option("--progress/--no-progress", default=True, help="show a progress bar")
def index_command(config: Path | None, engine: str | None, url: str | None,
                  catalog: Path | None, index_name: str | None, mapping: Path | None,
                  recreate: bool, replicas: int | None, batch_size: int, progress: bool) -> None:
    """Create the product index and bulk-load a JSONL catalog, reporting refused documents."""
    from es_integration.indexing import run_index_command

    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from exc
    ok = run_index_command(settings, engine, url, catalog, index_name, mapping, recreate,
                           replicas, batch_size, progress)
    if not ok:
        sys.exit(1)


# operator tools that live in their own modules
from sidecar.rules_cli import rules as _rules_group  # noqa: E402
from sidecar.warm import warm_command as _warm_command  # noqa: E402

main.add_command(_rules_group)
main.add_command(_warm_command)


if __name__ == "__main__":
    sys.exit(main())
