"""`rerank-sidecar serve` (with a configuration file) and `demo` (the embedded default)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sidecar.cli.common import config_option, settings_from
from sidecar.config import Settings

_HOST = click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
_PORT = click.option("--port", type=int, default=None, help="Port (default 8080).")


def own_process(settings: Settings) -> None:
    """What the serving process sets for itself: the interpreter's switch interval, so the
    model's forward thread and the event loop hand the interpreter to each other quickly; and
    numpy's OpenBLAS to one thread. Its only use here is the embedded engine's vector search
    (a matrix-vector product of a few ms at most); with its own threads spinning beside
    torch's, the event loop, the engine's and the batcher's, new-query throughput at 32
    clients was 69 req/s instead of 102, a lone client's 32 instead of 42."""
    from threadpoolctl import threadpool_limits

    sys.setswitchinterval(settings.scorer.gil_switch_interval_ms / 1000)
    threadpool_limits(limits=1, user_api="blas")


def _serve(config: Path | None, host: str | None, port: int | None) -> None:
    import uvicorn

    from sidecar import logs
    from sidecar.app import create_app
    from sidecar.cli.slow_clients import http_protocol

    logs.configure()  # JSON lines on stderr, request id on every line
    settings = settings_from(config)
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = settings.model_copy(update=overrides)
    own_process(settings)
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
        log_config=logs.uvicorn_log_config(),
        access_log=False,  # the request middleware writes one JSON line per request
        http=http_protocol(settings.limits.header_read_timeout_s),
    )


@click.command()
@config_option("YAML settings file (environment RERANK_* overrides it).")
@_HOST
@_PORT
def serve(config: Path | None, host: str | None, port: int | None) -> None:
    """Run the sidecar with a configuration file."""
    _serve(config, host, port)


@click.command()
@_HOST
@_PORT
def demo(host: str | None, port: int | None) -> None:
    """Run on the embedded default: demo catalog, in-process cache, MiniLM on the CPU."""
    _serve(None, host, port)
