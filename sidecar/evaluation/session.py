"""One evaluation run: the parts built for the corpus's fields, the corpus indexed, every query
evaluated with a progress bar, the report printed and written."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sidecar.config import Settings
from sidecar.evaluation import report as report_mod
from sidecar.evaluation.data import Dataset
from sidecar.evaluation.runner import EVAL_FIELDS, SEARCH_FIELDS, corpus_documents, evaluate
from sidecar.services import Services
from sidecar.wiring import loaded_services


async def run_eval(
    dataset: Dataset,
    settings: Settings,
    out: Path,
    echo: Callable[[str], None] = print,
    show: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Evaluate `dataset`; `echo` gets progress notes, `show` the result table. ConfigError
    when the model does not load."""
    # The corpus has its own fields (title, description): search and read those, on any engine.
    settings = settings.model_copy(
        update={
            "engine": settings.engine.model_copy(update={"search_fields": SEARCH_FIELDS}),
            "fields": EVAL_FIELDS,
        }
    )
    echo(f"loading the {settings.scorer.kind} model ...")
    async with loaded_services(settings) as services:
        index = f"eval-{dataset.name.lower()}"
        await _index_corpus(services, index, dataset, echo)
        started = time.perf_counter()
        bar = tqdm(total=len(dataset.queries), desc=f"evaluating {dataset.name}", unit="query")
        gains: list[float] = []

        def step(result: Any) -> None:
            gains.append(
                result.metrics["reranked"]["ndcg@10"] - result.metrics["engine"]["ndcg@10"]
            )
            bar.set_postfix(mean_gain=f"{sum(gains) / len(gains):+.3f}", refresh=False)
            bar.update(1)

        results = await evaluate(dataset, services, index, progress=step)
        bar.close()
        summary = report_mod.summarize(results)
        meta = {
            "model": services.scorer.model_id,
            "engine": services.backend.name,
            "rules_version": services.rules.current.version,
            "instruction": settings.scorer.instruction,
            "max_doc_chars": settings.scorer.max_doc_chars,
            "seconds": time.perf_counter() - started,
            "columns": dataset.columns,
        }
        show(
            report_mod.table(
                summary,
                f"\n{dataset.name}: {len(results)} queries, scorer {services.scorer.model_id}",
            )
        )
        for path in report_mod.write(out, dataset.name, summary, results, meta):
            echo(f"wrote {path}")
        return summary


async def _index_corpus(
    services: Services, index: str, dataset: Dataset, echo: Callable[[str], None]
) -> None:
    from sidecar.backends.base import HoldsIndexes

    docs = corpus_documents(dataset)
    echo(f"indexing {len(docs)} products into {services.backend.name} index {index!r}")
    if isinstance(services.backend, HoldsIndexes):  # the embedded engine
        services.backend.add_index(index, docs, "id", SEARCH_FIELDS)
        return
    from sidecar.backends.indexing import load_documents  # a real engine

    await load_documents(services.settings, index, docs, recreate=True)
