"""`rerank-sidecar warm`: warm the score cache with the top queries of a query log
(the work itself is sidecar.operations.warmup)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from sidecar.cli.common import loaded_services
from sidecar.config import Settings, load_settings
from sidecar.errors import ConfigError
from sidecar.operations.shared_store import StoreUnwritable
from sidecar.operations.warmup import (
    HttpTarget,
    InProcessTarget,
    Summary,
    check_store,
    load_state,
    top_queries,
    warm,
)


async def _run(
    queries: list[str],
    url: str | None,
    config: Path | None,
    timeout_ms: int,
    window: int | None,
    concurrency: int,
    rate: float | None,
    state: Path | None,
) -> Summary:
    from tqdm import tqdm

    settings: Settings | None = None
    if url is None:  # in process: the store is checked before anything starts
        settings = load_settings(config)
        if settings.cache.kind == "redis":
            await check_store(settings)
        else:
            click.echo(
                f"note: cache.kind is {settings.cache.kind!r}: an in-process warm-up only "
                "lasts as long as this command; use Redis or --url",
                err=True,
            )
    bar = tqdm(total=len(queries), unit="q", desc="warm", dynamic_ncols=True)

    def progress(summary: Summary) -> None:
        bar.n = summary.queries + summary.skipped
        bar.set_postfix(hit_ratio=f"{summary.hit_ratio:.2f}", errors=summary.errors)

    async def run(target: Any) -> Summary:
        bar.n = len(load_state(state) & set(queries))
        bar.refresh()
        return await warm(
            queries, target, concurrency=concurrency, rate=rate, state=state, on_result=progress
        )

    try:
        if url is not None:
            http = HttpTarget(url, timeout_ms, window)
            try:
                return await run(http)
            finally:
                await http.close()
        assert settings is not None  # read above, for the in-process mode
        async with loaded_services(settings) as services:
            return await run(InProcessTarget(services, timeout_ms, window))
    finally:
        bar.close()


@click.command("warm")
@click.option(
    "--queries",
    "queries_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Query log: one query per line, or CSV with 'query' and 'count' columns.",
)
@click.option("--top-k", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="At most this many queries per second.",
)
@click.option("--url", default=None, help="A running sidecar, e.g. http://127.0.0.1:8080.")
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Settings for the in-process mode (without --url).",
)
@click.option(
    "--state",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File of done queries: a rerun resumes where this one stopped.",
)
@click.option("--timeout-ms", type=click.IntRange(min=10), default=30_000, show_default=True)
@click.option(
    "--window",
    type=click.IntRange(min=1),
    default=None,
    help="Rerank window (default: the sidecar's).",
)
def warm_command(
    queries_file: Path,
    top_k: int,
    concurrency: int,
    rate: float | None,
    url: str | None,
    config: Path | None,
    state: Path | None,
    timeout_ms: int,
    window: int | None,
) -> None:
    """Warm the score cache with the top-K queries of a query log."""
    try:
        queries = top_queries(queries_file, top_k)
        summary = asyncio.run(
            _run(queries, url, config, timeout_ms, window, concurrency, rate, state)
        )
    except ConfigError as exc:
        raise click.ClickException(exc.message) from exc
    except StoreUnwritable as exc:
        raise click.ClickException(str(exc)) from exc
    for line in summary.failed[:10]:
        click.echo(f"failed: {line}", err=True)
    click.echo(summary.text())
    if summary.errors:
        raise SystemExit(1)
