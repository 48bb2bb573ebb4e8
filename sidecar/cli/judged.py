"""What the judged-data commands share (`eval`, `calibrate`, `rules tune`): the files and their
columns, the half of the queries to keep (fit on one half, report on the other), and which
model scores them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from sidecar.config import Settings
from sidecar.evaluation.data import Dataset, Split, load_csv, load_trec, split_queries

COLUMNS = ("query", "title", "text", "label", "id", "type")
KINDS = ("minilm", "lychee", "cross-encoder", "remote", "vllm")


@dataclass(frozen=True)
class Judged:
    """The judged-data options of one command line."""

    data: tuple[Path, ...]
    trec: bool
    columns: dict[str, str | None]
    half: int | None
    split_seed: int

    def datasets(self) -> list[Dataset]:
        """One dataset per CSV file, or the one TREC triple (InvalidRequest on a bad file)."""
        if not self.data:
            raise click.UsageError("give at least one CSV file (or --trec QUERIES CORPUS QRELS)")
        if self.trec:
            if len(self.data) != 3:
                raise click.UsageError("--trec takes three files: QUERIES CORPUS QRELS")
            return [load_trec(*self.data)]
        c = self.columns
        return [
            load_csv(
                path,
                query=c["query"],
                title=c["title"],
                text=c["text"],
                label=c["label"],
                product_id=c["id"],
                query_type=c["type"],
            )
            for path in self.data
        ]

    def one(self) -> Dataset:
        """The one judged set a fit reads (a CSV file, or a TREC triple)."""
        if not self.trec and len(self.data) > 1:
            raise click.UsageError("give one CSV file (or --trec QUERIES CORPUS QRELS)")
        return self.datasets()[0]

    def part(self, dataset: Dataset) -> tuple[Dataset, Split | None]:
        """The half of `dataset` that --half keeps, or all of it."""
        if self.half is None:
            return dataset, None
        return split_queries(dataset, self.half, self.split_seed)


def judged_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """DATA, --trec, the --*-column options, --half and --split-seed, handed to `command` as
    one `judged` argument."""
    options = [
        click.argument(
            "data", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path)
        ),
        click.option(
            "--trec",
            is_flag=True,
            help="DATA is QUERIES.tsv CORPUS.jsonl QRELS.tsv (TREC style) instead of CSV files",
        ),
        click.option("--query-column", default=None, help="CSV column of the query (detected)"),
        click.option("--title-column", default=None, help="CSV column of the product title"),
        click.option(
            "--text-column", default=None, help="CSV column of the description (optional)"
        ),
        click.option("--label-column", default=None, help="CSV column of the label (detected)"),
        click.option("--id-column", default=None, help="CSV column of the product id (detected)"),
        click.option("--type-column", default=None, help="CSV column of the query type"),
        click.option(
            "--half",
            type=click.IntRange(1, 2),
            default=None,
            help="keep only this half of the queries, split by query (a seeded hash of the "
            "query text): fit on one half, evaluate on the other",
        ),
        click.option(
            "--split-seed", type=int, default=0, show_default=True, help="seed of the --half split"
        ),
    ]

    @functools.wraps(command)  # keeps the options already on `command` (__click_params__)
    def wrapper(**kwargs: Any) -> Any:
        columns = {name: kwargs.pop(f"{name}_column") for name in COLUMNS}
        judged = Judged(
            kwargs.pop("data"),
            kwargs.pop("trec"),
            columns,
            kwargs.pop("half"),
            kwargs.pop("split_seed"),
        )
        return command(judged=judged, **kwargs)

    decorated: Callable[..., Any] = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated


def model_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--model",
        "model",
        default=None,
        metavar="KIND[:WHERE]",
        help="the scorer to use instead of the configured one: minilm, minilm:FOLDER, "
        "lychee:FOLDER (a Lychee-rerank-mm folder), cross-encoder:FOLDER (a local "
        "cross-encoder), remote:URL (a peer's /v1/rerank) or vllm:URL (a vLLM server; "
        "scorer.model and scorer.family as configured)",
    )(command)


def with_model(settings: Settings, spec: str | None) -> Settings:
    """`settings` with the scorer named by --model."""
    if not spec:
        return settings
    kind, _, where = spec.partition(":")
    if kind not in KINDS:
        raise click.BadParameter(
            f"{spec!r}: the kind is one of {', '.join(KINDS)}", param_hint="--model"
        )
    update: dict[str, Any] = {"kind": kind}
    if kind in ("remote", "vllm"):
        if not where:
            raise click.BadParameter(f"{kind} needs a URL: {kind}:URL", param_hint="--model")
        update["remote_url" if kind == "remote" else "url"] = where
    elif where:
        update["model_path"] = where
    elif kind in ("lychee", "cross-encoder"):
        raise click.BadParameter(f"{kind} needs its folder: {kind}:FOLDER", param_hint="--model")
    else:
        update["model_path"] = None
    return settings.model_copy(update={"scorer": settings.scorer.model_copy(update=update)})
