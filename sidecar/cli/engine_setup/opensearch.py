"""`rerank-sidecar engine-setup opensearch`: OpenSearch's rerank processor calls this sidecar
(the work is sidecar.operations.engine_setup.opensearch)."""

from __future__ import annotations

from pathlib import Path

import click

from sidecar.backends.indexing import engine_client
from sidecar.cli.common import (
    config_option,
    engine_index_option,
    engine_url_option,
    settings_from,
)
from sidecar.operations.engine_setup import opensearch


@click.command("opensearch")
@config_option("the sidecar's settings (engine auth and TLS, field map, deadlines)")
@engine_url_option("OpenSearch")
@click.option(
    "--sidecar-url",
    default=None,
    help="this sidecar's URL as OpenSearch reaches it, e.g. http://10.0.0.5:8080 "
    "(required unless --remove)",
)
@engine_index_option("index searched (default: engine.default_index)")
@click.option("--pipeline", default="sidecar_rerank", show_default=True, help="pipeline name")
@click.option(
    "--timeout-ms",
    type=click.IntRange(10, 60_000),
    default=None,
    help="the sidecar's scoring budget per call (default: its /search deadline, "
    "limits.default_timeout_ms)",
)
@click.option("--remove", is_flag=True, help="delete the pipeline, model and connector instead")
def opensearch_command(
    config: Path | None,
    url: str | None,
    sidecar_url: str | None,
    index: str | None,
    pipeline: str,
    timeout_ms: int | None,
    remove: bool,
) -> None:
    """Make this sidecar OpenSearch's reranker: cluster settings, an ML Commons connector to
    /v1/rerank, a deployed remote model and a search pipeline with the rerank processor
    (idempotent: run it again after a change). --remove takes them down."""
    if not (remove or sidecar_url):
        raise click.UsageError("--sidecar-url is required (unless --remove)")
    settings = settings_from(config)
    target = url or settings.engine.urls[0]
    plan = opensearch.Plan.from_settings(settings, sidecar_url or "", pipeline, index, timeout_ms)
    with engine_client(settings.engine, target) as client:
        try:
            if remove:
                outcome = opensearch.remove(client, pipeline)
            else:
                outcome = opensearch.set_up(client, plan)
        except opensearch.SetupError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"opensearch at {opensearch.redacted(target)}:")
    for step in outcome.steps:
        click.echo(f"  {step}")
    if not remove:
        click.echo(opensearch.search_advice(plan))
