"""The `rerank-sidecar` command: serve, demo, and the operator tools that grow beside them."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from sidecar.config import load_settings
from sidecar.errors import ConfigError


@click.group()
def main() -> None:
    """Multimodal reranking sidecar for Elasticsearch and OpenSearch."""


def _serve(config: Path | None, host: str | None, port: int | None) -> None:
    import uvicorn

    from sidecar.app import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
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
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


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


if __name__ == "__main__":
    sys.exit(main())
