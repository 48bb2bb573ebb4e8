"""Evaluation sessions: the parts built for the corpus's fields, the judged data scored through
them with a progress bar, the result printed and written. `eval` (ranking quality), `calibrate`
(a score calibration) and `rules tune` (blend and drop threshold) each run one."""

from __future__ import annotations

import datetime
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from sidecar.backends.base import Hit
from sidecar.config import Settings
from sidecar.documents import from_hit
from sidecar.errors import ConfigError
from sidecar.evaluation import report as report_mod
from sidecar.evaluation.calibration import Pairs, fit, measure, plot_reliability
from sidecar.evaluation.data import Dataset, Relevance, Split, query_digest
from sidecar.evaluation.judged import ScoredQuery, score_judged
from sidecar.evaluation.runner import (
    EVAL_FIELDS,
    SEARCH_FIELDS,
    QueryResult,
    Variant,
    corpus_documents,
    evaluate,
)
from sidecar.evaluation.tuning import (
    HEADER,
    TuneResult,
    diff,
    suggested_text,
    table,
    tune,
    variant_overrides,
)
from sidecar.rules.loader import load_rules, read_rules_text
from sidecar.scoring.base import EmbedsText, Scorer, identity_of
from sidecar.scoring.calibration import (
    BUNDLED,
    Calibration,
    Method,
    bundled_for,
    check_identity,
    load_calibration,
)
from sidecar.services import Services
from sidecar.wiring import give_vectors, loaded_services

Echo = Callable[[str], None]


def eval_settings(
    settings: Settings, calibration: Path | Literal["bundled"] | None = None
) -> Settings:
    """The settings for judged data: the corpus has its own fields (title, description), which
    every engine searches and the documents read; the pipeline applies `calibration` (None:
    raw scores)."""
    return settings.model_copy(
        update={
            "engine": settings.engine.model_copy(update={"search_fields": SEARCH_FIELDS}),
            "fields": EVAL_FIELDS,
            "scorer": settings.scorer.model_copy(update={"calibration": calibration}),
        }
    )


async def run_eval(
    dataset: Dataset,
    settings: Settings,
    out: Path,
    echo: Echo = print,
    show: Echo = print,
    *,
    calibration: Path | Literal["bundled"] | None = None,
    rules: Path | None = None,
    split: Split | None = None,
    mapping: Path | None = None,
    scorer: Scorer | None = None,
) -> dict[str, Any]:
    """Evaluate `dataset`; `echo` gets progress notes, `show` the result table. With
    `calibration` (default: the configured scorer.calibration) the report adds the calibrated
    order and the reliability diagram; with `rules`, the tuned order; `mapping` is the index
    template on Elasticsearch/OpenSearch (None: the one `rerank-sidecar index` picks).
    ConfigError when the model does not load or the calibration is not this scorer's. A
    `scorer` given is used (loaded if need be) and left open: runs that compare settings share
    one model and its embeddings."""
    calibration = calibration or settings.scorer.calibration
    settings = eval_settings(settings)  # reranked: the raw scores, as before any calibration
    echo(f"loading the {settings.scorer.kind} model ...")
    if split is not None:
        show(split.describe())
    async with loaded_services(settings, scorer) as services:
        variants: list[Variant] = []
        calibrated = None
        scoring, pipeline = services.scoring, services.pipeline
        if calibration == BUNDLED:  # the shipped one for this scorer, if any
            calibrated = bundled_for(identity_of(services.scorer))
        elif isinstance(calibration, Path):
            calibrated = load_calibration(calibration)
            check_identity(calibrated, identity_of(services.scorer), services.scorer.model_id)
        if calibrated is not None:
            scoring = services.scoring.calibrated_by(calibrated)
            pipeline = pipeline.scored_by(scoring)
            variants.append(Variant("calibrated", pipeline))
        if rules is not None:
            variants.append(Variant("tuned", pipeline, load_rules(rules)))
        index = f"eval-{dataset.name.lower()}"
        template = await _index_corpus(services, index, dataset, echo, mapping)
        started = time.perf_counter()
        bar = tqdm(total=len(dataset.queries), desc=f"evaluating {dataset.name}", unit="query")
        gains: list[float] = []

        def step(result: Any) -> None:
            gains.append(
                result.metrics["reranked"]["ndcg@10"] - result.metrics["engine"]["ndcg@10"]
            )
            bar.set_postfix(mean_gain=f"{sum(gains) / len(gains):+.3f}", refresh=False)
            bar.update(1)

        results = await evaluate(
            dataset, services, index, progress=step, variants=variants, scoring=scoring
        )
        bar.close()
        summary = report_mod.summarize(results)
        meta: dict[str, Any] = {
            "model": services.scorer.model_id,
            "score_identity": identity_of(services.scorer),
            "engine": services.backend.name,
            "retrieval": "hybrid" if settings.hybrid.enabled else "lexical",
            "mapping": template,
            "rules_version": services.rules.current.version,
            "tuned_rules": str(rules) if rules else None,
            "instruction": settings.scorer.instruction,
            "max_doc_chars": settings.scorer.max_doc_chars,
            "seconds": time.perf_counter() - started,
            "columns": dataset.columns,
            "split": split.to_json() if split else None,
        }
        show(
            report_mod.table(
                summary,
                f"\n{dataset.name}: {len(results)} queries, scorer {services.scorer.model_id}",
            )
        )
        if calibrated is not None:
            meta["calibration"] = _reliability(dataset, results, calibrated, out, show)
        for path in report_mod.write(out, dataset.name, summary, results, meta):
            echo(f"wrote {path}")
        return summary


def _reliability(
    dataset: Dataset,
    results: Sequence[QueryResult],
    calibration: Calibration,
    out: Path,
    show: Echo,
) -> dict[str, Any]:
    """ECE raw vs calibrated on the evaluated pairs (the calibration's own relevance rule),
    the reliability diagram, and how many of these queries it was fitted on."""
    data = calibration.meta.get("data", {})
    relevance = (
        Relevance.from_json(data["relevant"])
        if "relevant" in data
        else Relevance.default_for(dataset)
    )
    raw, cal, rel = [], [], []
    for r in results:
        for pid, (raw_score, calibrated) in r.scores.items():
            raw.append(raw_score)
            cal.append(calibrated)
            rel.append(relevance(r.query.labels[pid]))
    fitted = set(data.get("query_digests", []))
    overlap = sum(query_digest(r.query.text) in fitted for r in results)
    quality = measure(raw, cal, rel)
    plot = plot_reliability(
        out / f"{dataset.name}-reliability.png",
        f"{dataset.name}: reliability ({calibration.method}, {relevance.describe()})",
        raw,
        cal,
        rel,
    )
    show(
        f"calibration {calibration.source} ({calibration.method}, relevant: "
        f"{relevance.describe()}): ECE raw {quality['ece_raw']:.4f} -> calibrated "
        f"{quality['ece_calibrated']:.4f} on {quality['pairs']} pairs; Brier "
        f"{quality['brier_raw']:.4f} -> {quality['brier_calibrated']:.4f}"
    )
    if overlap:
        show(
            f"warning: {overlap} of these {len(results)} queries were fitted on by the "
            "calibration: its numbers here are not held out (see --half)"
        )
    return {
        "file": calibration.source,
        "method": calibration.method,
        "relevant": relevance.describe(),
        "overlap": overlap,
        "plot": plot.name,
        **quality,
    }


async def run_calibrate(
    dataset: Dataset,
    settings: Settings,
    out: Path,
    method: Method,
    sources: Sequence[Path],
    relevant_min: float | None = None,
    split: Split | None = None,
    echo: Echo = print,
    show: Echo = print,
) -> Calibration:
    """Score every judged pair (raw: no calibration applied), fit `method`, write the JSON to
    `out` and the reliability diagram beside it (`out` with .png); print the ECE."""
    relevance = Relevance.default_for(dataset, relevant_min)
    settings = eval_settings(settings)  # fitted on raw scores, whatever the configuration says
    if split is not None:
        show(split.describe())
    echo(f"loading the {settings.scorer.kind} model ...")
    async with loaded_services(settings) as services:
        queries = await _score_all(dataset, services, None)
        identity, model = identity_of(services.scorer), services.scorer.model_id
        instruction = settings.scorer.instruction
    labels = [q.labels[i] for q in queries for i in q.ids]
    pairs = Pairs(
        raw=[q.raw[i] for q in queries for i in q.ids],
        relevant=[relevance(v) for v in labels],
        groups=[q.query.id for q in queries for i in q.ids],
    )
    meta = {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "instruction": instruction,
        "max_doc_chars": settings.scorer.max_doc_chars,
        "data": {
            "name": dataset.name,
            "files": [_file_entry(p) for p in sources],
            "columns": dataset.columns,
            "queries": len(queries),
            "pairs": len(labels),
            "relevant": relevance.to_json(),
            "split": split.to_json() if split else None,
            "query_digests": sorted(query_digest(q.query.text) for q in queries),
        },
    }
    try:
        calibration = fit(pairs, method, identity, model, meta)
    except ValueError as exc:
        raise ConfigError(f"{dataset.name}: cannot calibrate: {exc}") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(calibration.to_json(), indent=2) + "\n", encoding="utf-8")
    quality = calibration.meta["quality"]
    plot = plot_reliability(
        out.with_suffix(".png"),
        f"{dataset.name}: {method}, relevant: {relevance.describe()} (fitted pairs)",
        pairs.raw,
        calibration.apply(pairs.raw),
        pairs.relevant,
    )
    cv = quality["cv"]
    show(
        f"{dataset.name}: {quality['pairs']} pairs of {len(queries)} queries, "
        f"{quality['relevant']} relevant ({relevance.describe()}); score identity {identity}\n"
        f"ECE raw {quality['ece_raw']:.4f} -> calibrated {quality['ece_calibrated']:.4f} "
        f"(on the fitted pairs)"
        + (
            f"; cross-validated by query ({cv['folds']} folds): {cv['ece_calibrated']:.4f}"
            if "ece_calibrated" in cv
            else f"; {cv.get('note', '')}"
        )
        + f"\nBrier raw {quality['brier_raw']:.4f} -> calibrated {quality['brier_calibrated']:.4f}"
    )
    echo(f"wrote {out}\nwrote {plot}")
    return calibration


async def run_tune(
    dataset: Dataset,
    settings: Settings,
    rules: Path,
    out: Path,
    report: Path,
    *,
    calibration: Path | Literal["bundled"] | None = None,
    folds: int = 5,
    seed: int = 0,
    split: Split | None = None,
    echo: Echo = print,
    show: Echo = print,
) -> TuneResult:
    """Score every judged pair and the engine's hits once, grid-search the blend and drop
    threshold of `rules` with cross-validation, print the table and the diff, and write the
    suggested file to `out` (never to `rules` itself) and the full report to `report`."""
    original = read_rules_text(rules)
    base = load_rules(rules)
    live = {p.resolve() for p in (rules, settings.rules.path) if p is not None}
    if out.resolve() in live:
        raise ConfigError(f"{out} is the rules file being tuned: give another --out")
    calibration = calibration or settings.scorer.calibration
    settings = eval_settings(settings, calibration)
    if split is not None:
        show(split.describe())
    echo(f"loading the {settings.scorer.kind} model ...")
    async with loaded_services(settings) as services:
        index = f"eval-{dataset.name.lower()}"
        await _index_corpus(services, index, dataset, echo)
        queries = await _score_all(dataset, services, index)
        applied = services.scoring.calibration
    if applied is None:
        calibration = None  # `bundled`, and none ships for this scorer: raw scores
    elif calibration == BUNDLED:
        calibration = Path(applied.source)
    scores = "calibrated" if calibration else "raw"
    with tqdm(desc="tuning", unit="candidate") as bar:

        def step(done: int) -> None:
            bar.update(done - bar.n)

        result = tune(
            queries,
            base.rules,
            folds=folds,
            seed=seed,
            calibrated=calibration is not None,
            progress=step,
        )
    show(f"\n{dataset.name}: {result.queries} queries, {scores} scores\n{table(result)}")
    best, cv = result.best, result.cross_validated
    show(
        f"\nsuggested: {best.label()} (best on all {result.queries} queries); the tuning "
        f"procedure, cross-validated: NDCG@10 {cv.mean:.4f} vs current file "
        f"{result.current.mean:.4f} vs model alone {result.model.mean:.4f}"
    )
    for name in variant_overrides(base.rules):
        show(f"note: variant {name!r} replaces the blend or drop; tuning leaves it as it is")
    header = [
        f"{HEADER} on {dataset.name} ({result.queries} queries, {scores} scores"
        + (f", calibration {calibration}" if calibration else "")
        + f"), {datetime.date.today().isoformat()}: cross-validated NDCG@10 {cv.mean:.4f}",
        f"{HEADER}: current file {result.current.mean:.4f}, model alone {result.model.mean:.4f}",
    ]
    text = suggested_text(original, best, header)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    changes = diff(original, text, str(rules), str(out))
    show(changes if changes else f"(no change: {rules} is already the best candidate)")
    data = {
        "dataset": dataset.name,
        "rules": str(rules),
        "suggested_rules": str(out),
        "calibration": str(calibration) if calibration else None,
        "split": split.to_json() if split else None,
        **result.to_json(),
    }
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    echo(f"wrote {out}\nwrote {report}")
    return result


async def _score_all(dataset: Dataset, services: Services, index: str | None) -> list[ScoredQuery]:
    pairs = sum(len(q.labels) for q in dataset.queries)
    with tqdm(total=pairs, desc=f"scoring {dataset.name}", unit="pair") as bar:
        return await score_judged(
            dataset, services, index, progress=lambda q: bar.update(len(q.ids))
        )


def _file_entry(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return {"path": str(path), "name": Path(path).name, "sha256": digest}


async def _index_corpus(
    services: Services, index: str, dataset: Dataset, echo: Echo, template: Path | None = None
) -> str | None:
    """Index the corpus; the index template a real engine was given (None: embedded)."""
    from sidecar.backends.base import HoldsIndexes

    docs = corpus_documents(dataset)
    echo(f"indexing {len(docs)} products into {services.backend.name} index {index!r}")
    hybrid = services.settings.hybrid
    if isinstance(services.backend, HoldsIndexes):  # the embedded engine
        services.backend.add_index(index, docs, "id", SEARCH_FIELDS)
        if hybrid.enabled:
            echo("encoding the corpus for the vector leg")
            await give_vectors(services, index)
        return None
    from sidecar.backends.indexing import Vectors, load_documents  # a real engine

    vectors = None
    scorer = services.scorer
    if hybrid.enabled and isinstance(scorer, EmbedsText):
        fields = services.settings.fields

        def embed(batch: Sequence[Mapping[str, Any]]) -> list[list[float]]:
            hits = [Hit(str(doc["id"]), 0.0, doc) for doc in batch]
            return scorer.document_vectors([from_hit(hit, fields) for hit in hits])

        vectors = Vectors(services.backend.name, hybrid.field, hybrid.dims, embed)
    report = await load_documents(
        services.settings, index, docs, recreate=True, template=template, vectors=vectors
    )
    echo(f"mapping: {report.template} ({report.note})")
    return str(report.template)
