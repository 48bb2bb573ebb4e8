"""`rerank-sidecar eval`: load judged data, index it, evaluate, print and write the report."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from sidecar.config import Settings
from sidecar.evaluation import report as report_mod
from sidecar.evaluation.data import Dataset
from sidecar.evaluation.runner import EVAL_FIELDS, SEARCH_FIELDS, corpus_documents, evaluate
from sidecar.services import Services


async def run_eval(dataset: Dataset, settings: Settings, out: Path) -> dict[str, Any]:
    from sidecar.app import build_services

    # The corpus has its own fields (title, description): search and read those, on any engine.
    settings = settings.model_copy(update={
        "engine": settings.engine.model_copy(update={"search_fields": SEARCH_FIELDS}),
        "fields": EVAL_FIELDS})
    services = build_services(settings)
    try:
        click.echo(f"loading model {services.scorer.model_id} ...", err=True)
        await services.scorer.load()
        if not services.scorer.state.ready:
            raise click.ClickException(f"model did not load: {services.scorer.state.reason}")
        index = f"eval-{dataset.name.lower()}"
        await _index_corpus(services, index, dataset)
        started = time.perf_counter()
        bar = tqdm(total=len(dataset.queries), desc=f"evaluating {dataset.name}", unit="query")
        gains: list[float] = []

        def step(result: Any) -> None:
            gains.append(result.metrics["reranked"]["ndcg@10"]
                         - result.metrics["engine"]["ndcg@10"])
            bar.set_postfix(mean_gain=f"{sum(gains) / len(gains):+.3f}", refresh=False)
            bar.update(1)

        results = await evaluate(dataset, services, index, progress=step)
        bar.close()
        summary = report_mod.summarize(results)
        meta = {"model": services.scorer.model_id, "engine": services.backend.name,
                "rules_version": services.rules.current.version,
                "instruction": settings.scorer.instruction,
                "max_doc_chars": settings.scorer.max_doc_chars,
                "seconds": time.perf_counter() - started, "columns": dataset.columns}
        click.echo(report_mod.table(summary, f"\n{dataset.name}: {len(results)} queries, "
                                             f"scorer {services.scorer.model_id}"))
        for path in report_mod.write(out, dataset.name, summary, results, meta):
            click.echo(f"wrote {path}", err=True)
        return summary
    finally:
        await services.scorer.close()
        await services.cache.close()
        await services.backend.close()


async def _index_corpus(services: Services, index: str, dataset: Dataset) -> None:
    docs = corpus_documents(dataset)
    click.echo(f"indexing {len(docs)} products into {services.backend.name} index {index!r}",
               err=True)
    add_index = getattr(services.backend, "add_index", None)
    if add_index is not None:  # the embedded engine
        add_index(index, docs, "id", SEARCH_FIELDS)
        return
    from es_integration.indexing import load_documents  # a real engine

    await load_documents(services.settings, index, docs, recreate=True)


def run(dataset: Dataset, settings: Settings, out: Path) -> dict[str, Any]:
    return asyncio.run(run_eval(dataset, settings, out))
