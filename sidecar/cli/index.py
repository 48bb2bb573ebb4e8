"""`rerank-sidecar index`: create the product index and bulk-load a JSONL catalog."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from sidecar.backends.indexing import IndexingError, Vectors, index_catalog
from sidecar.cli.common import (
    config_option,
    engine_index_option,
    engine_url_option,
    settings_from,
)
from sidecar.config import Settings
from sidecar.demo import CATALOG_PATH
from sidecar.scoring.base import Scorer

T = TypeVar("T")


@click.command("index")
@config_option("settings (engine URLs, auth, TLS, default index, field map)")
@click.option(
    "--engine",
    type=click.Choice(["elasticsearch", "opensearch"]),
    default=None,
    help="engine kind (default: engine.kind of the settings)",
)
@engine_url_option("engine")
@click.option(
    "--catalog",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSONL catalog, one product a line (default: the demo catalog)",
)
@engine_index_option("index (default: engine.default_index)", name="index_name")
@click.option(
    "--mapping",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="index settings+mappings JSON (default: templates/products-cjk.json, English stemming "
    "and .cjk sub-fields, where the engine has the english and cjk analyzers of "
    "analysis-common, else templates/products.json; the choice is printed)",
)
@click.option("--recreate", is_flag=True, help="delete the index first if it exists")
@click.option("--replicas", type=int, default=None, help="number_of_replicas (template: 0)")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=500, show_default=True)
@click.option("--progress/--no-progress", default=True, help="show a progress bar")
@click.option(
    "--embed",
    is_flag=True,
    help="also encode every product once and share the embeddings in Redis (cache.kind: redis, "
    "cache.share_embeddings: true), so replicas meet them warm; fails when Redis does not take "
    "the writes",
)
@click.option(
    "--vectors/--no-vectors",
    default=None,
    help="write each product's vector (the scorer's, minilm) into hybrid.field of a new index "
    "(dense_vector on Elasticsearch, knn_vector on OpenSearch), for the hybrid first stage "
    "(default: when hybrid.enabled, and the scorer makes vectors: a scorer without them is "
    "then said and the index is lexical only; --vectors with such a scorer fails)",
)
def index_command(
    config: Path | None,
    engine: str | None,
    url: str | None,
    catalog: Path | None,
    index_name: str | None,
    mapping: Path | None,
    recreate: bool,
    replicas: int | None,
    batch_size: int,
    progress: bool,
    embed: bool,
    vectors: bool | None,
) -> None:
    """Create the product index and bulk-load a JSONL catalog, reporting refused documents."""
    settings = settings_from(config)
    implicit = vectors is None  # hybrid on: vectors where the scorer makes them
    if implicit:
        vectors = settings.hybrid.enabled
    if embed:  # refused before the load, not after it: a half-done command misleads
        from sidecar.operations.embed import check_target

        _embed_or_fail(check_target(settings))
    ok = _load(
        settings,
        engine,
        url,
        catalog,
        index_name,
        mapping,
        recreate,
        replicas,
        batch_size,
        progress,
        bool(vectors),
        implicit,
    )
    if embed:
        _embed(settings, catalog or CATALOG_PATH, progress)
    if not ok:
        sys.exit(1)


def _vector_writer(settings: Settings, kind: str, implicit: bool) -> tuple[Vectors, Scorer] | None:
    """The vectors to write; None where they were not asked for by name and the scorer cannot
    make them (said on stderr: the index is then lexical only)."""
    from sidecar.errors import ConfigError
    from sidecar.operations.embed import engine_vectors

    try:
        return asyncio.run(engine_vectors(settings, kind))
    except ConfigError as exc:
        if implicit:
            click.echo(f"no vectors written (the index is lexical only): {exc.message}", err=True)
            return None
        raise click.ClickException(exc.message) from exc


def _embed_or_fail(work: Coroutine[Any, Any, T]) -> T:
    """Run `work`; settings that cannot share embeddings, or a store that refuses writes, end
    the command with the reason and exit status 1."""
    from sidecar.errors import ConfigError
    from sidecar.operations.shared_store import StoreUnwritable

    try:
        return asyncio.run(work)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from exc
    except StoreUnwritable as exc:
        raise click.ClickException(str(exc)) from exc


def _embed(settings: Settings, catalog: Path, progress: bool) -> None:
    from tqdm import tqdm

    from sidecar.operations.embed import embed_catalog

    with tqdm(desc="embedding catalog", unit="doc", disable=not progress) as bar:

        def moved(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        report = _embed_or_fail(embed_catalog(settings, catalog, moved))
    click.echo(
        f"embeddings: {report.encoded} encoded, {report.found} already shared, of "
        f"{report.total} products, in {report.seconds:.1f} s; {report.written} written to "
        f"{report.store}",
        err=True,
    )


def _load(
    settings: Settings,
    engine: str | None,
    url: str | None,
    catalog: Path | None,
    index: str | None,
    mapping: Path | None,
    recreate: bool,
    replicas: int | None,
    batch_size: int,
    progress: bool = True,
    vectors: bool = False,
    implicit: bool = False,
) -> bool:
    """Load, print a summary and every refused document; False when a document failed."""
    kind = engine or settings.engine.kind
    if kind not in ("elasticsearch", "opensearch"):
        raise click.ClickException(
            f"engine.kind is {kind!r}: the embedded engine indexes its catalog at start-up; "
            "give --engine elasticsearch|opensearch"
        )
    engine_settings = settings.engine
    if url:
        engine_settings = engine_settings.model_copy(update={"urls": [url]})
    source = catalog or CATALOG_PATH
    writer = _vector_writer(settings, kind, implicit) if vectors else None
    try:
        report = index_catalog(
            engine_settings,
            source,
            index=index,
            template=mapping,
            recreate=recreate,
            replicas=replicas,
            id_field=settings.fields.id or "id",
            batch_size=batch_size,
            progress=progress,
            vectors=writer[0] if writer else None,
            vectors_optional=implicit,
        )
    except IndexingError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if writer is not None:
            asyncio.run(writer[1].close())
    where = engine_settings.urls[0]
    state = "created" if report.created else "existing"
    click.echo(
        f"{kind} at {where}: {report.indexed} of {report.total} documents from {source} "
        f"indexed into {state} index {report.index!r} in {report.seconds:.1f} s",
        err=True,
    )
    if report.note:
        click.echo(f"  mapping: {report.note}", err=True)
    for failure in sorted(report.failures, key=lambda f: f.line):
        doc = f" (id {failure.doc_id})" if failure.doc_id else ""
        click.echo(f"  line {failure.line}{doc}: {failure.reason}", err=True)
    if report.failures:
        click.echo(f"{len(report.failures)} documents refused", err=True)
    return not report.failures
