"""`rerank-sidecar engine-setup elasticsearch`: the `custom` inference endpoint that makes
Elasticsearch call this sidecar's /v1/rerank, and the retriever body a search sends to use it.
The work is in sidecar.operations.engine_setup.elasticsearch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from sidecar.cli.common import (
    config_option,
    engine_index_option,
    engine_url_option,
    settings_from,
)
from sidecar.config import Settings
from sidecar.operations.engine_setup import elasticsearch as setup


@click.command("elasticsearch")
@config_option("settings (engine auth and TLS, fields, search fields, limits)")
@engine_url_option("Elasticsearch")
@click.option(
    "--sidecar-url",
    required=True,
    help="this sidecar's base URL as Elasticsearch reaches it (the endpoint calls /v1/rerank)",
)
@click.option("--inference-id", default=setup.DEFAULT_INFERENCE_ID, show_default=True)
@click.option(
    "--field",
    default=None,
    help="the field the reranker reads, in the printed search (default: fields.title)",
)
@click.option(
    "--rank-window-size",
    type=click.IntRange(min=1),
    default=None,
    help="hits reranked per search, in the printed search (default and most: "
    "limits.max_rerank_documents)",
)
@engine_index_option("index of the printed search (engine.default_index)")
@click.option("--remove", is_flag=True, help="delete the endpoint instead")
@click.option(
    "--print-only", is_flag=True, help="print the endpoint and the search; change nothing"
)
def elasticsearch_command(
    config: Path | None,
    url: str | None,
    sidecar_url: str,
    inference_id: str,
    field: str | None,
    rank_window_size: int | None,
    index: str | None,
    remove: bool,
    print_only: bool,
) -> None:
    """Make Elasticsearch rerank through this sidecar (the `custom` inference service, 8.19 /
    9.1+, enterprise or trial license): idempotent, --remove takes it down."""
    if remove and print_only:
        raise click.UsageError("--remove and --print-only do not go together")
    settings = settings_from(config)
    window = _window(settings, rank_window_size)
    try:
        if print_only:
            outcome = setup.Outcome(inference_id, "print-only", setup.endpoint_body(sidecar_url))
        else:
            with setup.connect(settings.engine, url) as client:
                outcome = (
                    setup.remove(client, inference_id)
                    if remove
                    else setup.set_up(client, inference_id, sidecar_url)
                )
    except setup.EngineSetupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"inference endpoint {inference_id}: {outcome.action}", err=True)
    click.echo(json.dumps(_report(outcome, settings, field, window, index), indent=2))


def _window(settings: Settings, asked: int | None) -> int:
    most = settings.limits.max_rerank_documents
    if asked is not None and asked > most:
        raise click.BadParameter(
            f"{asked} is above the {most} documents the sidecar reranks per request "
            "(limits.max_rerank_documents)",
            param_hint="--rank-window-size",
        )
    return asked or most


def _report(
    outcome: setup.Outcome, settings: Settings, field: str | None, window: int, index: str | None
) -> dict[str, Any]:
    report: dict[str, Any] = {"inference_id": outcome.inference_id, "action": outcome.action}
    if outcome.endpoint is None:  # removed
        return report
    report["endpoint"] = {"method": "PUT", "path": outcome.path, "body": outcome.endpoint}
    body = setup.search_body(
        outcome.inference_id,
        field or settings.fields.title,
        window,
        settings.engine.search_fields,
    )
    path = f"/{index or settings.engine.default_index}/_search"
    report["search"] = {"method": "POST", "path": path, "body": body}
    return report
