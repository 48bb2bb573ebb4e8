"""Judged data sets: a CSV of (query, product, label) rows, or TREC style (queries, corpus, qrels).

Column names are options; when not given, common ones are detected, so the Kaggle files
(CrowdFlower: query/product_title/product_description/median_relevance; Home Depot:
search_term/product_uid/product_title/relevance) load with no options at all.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sidecar.errors import InvalidRequest

QUERY_COLUMNS = ("query", "search_term", "query_text", "q")
TITLE_COLUMNS = ("product_title", "title", "name", "product_name")
TEXT_COLUMNS = ("product_description", "description", "text", "body", "selling_points")
LABEL_COLUMNS = ("median_relevance", "relevance", "label", "grade", "rel")
ID_COLUMNS = ("product_uid", "product_id", "doc_id", "docid", "sku")
TYPE_COLUMNS = ("query_type", "type", "segment")

_TAGS = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Product:
    id: str
    title: str
    text: str = ""


@dataclass
class JudgedQuery:
    id: str
    text: str
    labels: dict[str, float]  # product id -> label
    query_type: str | None = None


@dataclass
class Dataset:
    name: str
    products: dict[str, Product]
    queries: list[JudgedQuery]
    columns: dict[str, str | None] = field(default_factory=dict)

    @property
    def label_range(self) -> tuple[float, float]:
        labels = [v for q in self.queries for v in q.labels.values()]
        return min(labels), max(labels)


def clean_text(raw: str) -> str:
    """Kaggle descriptions are HTML-ish: drop tags, unescape entities, collapse whitespace."""
    return _SPACE.sub(" ", html.unescape(_TAGS.sub(" ", raw or ""))).strip()


def _pick(
    header: Sequence[str],
    given: str | None,
    candidates: Sequence[str],
    what: str,
    required: bool = True,
) -> str | None:
    if given:
        if given not in header:
            raise InvalidRequest(
                f"column {given!r} is not in the file (columns: {', '.join(header)})", field=what
            )
        return given
    lowered = {h.lower(): h for h in header}
    for name in candidates:
        if name in lowered:
            return lowered[name]
    if required:
        raise InvalidRequest(
            f"no {what} column found; name it with --{what}-column (columns: {', '.join(header)})",
            field=what,
        )
    return None


def load_csv(
    path: Path,
    *,
    query: str | None = None,
    title: str | None = None,
    text: str | None = None,
    label: str | None = None,
    product_id: str | None = None,
    query_type: str | None = None,
) -> Dataset:
    with Path(path).open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = list(reader.fieldnames or [])
        cols = {
            "query": _pick(header, query, QUERY_COLUMNS, "query"),
            "title": _pick(header, title, TITLE_COLUMNS, "title"),
            "text": _pick(header, text, TEXT_COLUMNS, "text", required=False),
            "label": _pick(header, label, LABEL_COLUMNS, "label"),
            "id": _pick(header, product_id, ID_COLUMNS, "id", required=False),
            "type": _pick(header, query_type, TYPE_COLUMNS, "type", required=False),
        }
        products: dict[str, Product] = {}
        queries: dict[str, JudgedQuery] = {}
        for line, row in enumerate(reader, start=2):
            title_text = clean_text(row[cols["title"] or ""])
            body = clean_text(row[cols["text"]]) if cols["text"] else ""
            pid = row[cols["id"]].strip() if cols["id"] else _content_id(title_text, body)
            products.setdefault(pid, Product(pid, title_text, body))
            try:
                value = float(row[cols["label"] or ""])
            except ValueError as exc:
                raise InvalidRequest(
                    f"{path}:{line}: label {row[cols['label'] or '']!r} is not a number",
                    field="label",
                ) from exc
            qtext = row[cols["query"] or ""].strip()
            judged = queries.setdefault(
                qtext,
                JudgedQuery(
                    id=f"q{len(queries) + 1}",
                    text=qtext,
                    labels={},
                    query_type=row[cols["type"]].strip() if cols["type"] else None,
                ),
            )
            judged.labels[pid] = value
    return Dataset(Path(path).stem, products, list(queries.values()), cols)


def load_trec(queries_path: Path, corpus_path: Path, qrels_path: Path) -> Dataset:
    """queries: TSV `qid<TAB>text[<TAB>type]`; corpus: JSONL {_id|id, title, text};
    qrels: TSV `qid docid label` or `qid 0 docid label` (an optional header line)."""
    texts: dict[str, tuple[str, str | None]] = {}
    for row in _tsv(queries_path):
        texts[row[0]] = (row[1], row[2] if len(row) > 2 else None)
    products: dict[str, Product] = {}
    with Path(corpus_path).open(encoding="utf-8") as handle:
        for raw in handle:
            if raw.strip():
                doc = json.loads(raw)
                pid = str(doc.get("_id", doc.get("id")))
                products[pid] = Product(
                    pid, clean_text(doc.get("title", "")), clean_text(doc.get("text", ""))
                )
    judged: dict[str, JudgedQuery] = {}
    for row in _tsv(qrels_path):
        qid, docid, label = (row[0], row[2], row[3]) if len(row) >= 4 else (row[0], row[1], row[2])
        try:
            value = float(label)
        except ValueError:
            continue  # a header line
        if qid in texts and docid in products:
            text, qtype = texts[qid]
            judged.setdefault(qid, JudgedQuery(qid, text, {}, qtype)).labels[docid] = value
    return Dataset(Path(qrels_path).stem, products, list(judged.values()))


def _tsv(path: Path) -> list[list[str]]:
    with Path(path).open(encoding="utf-8") as handle:
        return [line.rstrip("\n").split("\t") for line in handle if line.strip()]


def _content_id(title: str, text: str) -> str:
    return "d" + hashlib.sha1(f"{title}\x1f{text}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Relevance:
    """Which labels count as relevant when a graded label becomes yes/no (calibration):
    `label >= threshold` when given (`--relevant-min`), else labels above the middle of the
    file's range (CrowdFlower 1-4: 3 and 4; Home Depot 1-3: above 2), as the eval's recall."""

    threshold: float
    inclusive: bool = False

    def __call__(self, label: float) -> bool:
        return label >= self.threshold if self.inclusive else label > self.threshold

    def describe(self) -> str:
        return f"label {'>=' if self.inclusive else '>'} {self.threshold:g}"

    def to_json(self) -> dict[str, float]:
        return {"label_gte" if self.inclusive else "label_gt": self.threshold}

    @classmethod
    def from_json(cls, data: dict[str, float]) -> Relevance:
        if "label_gte" in data:
            return cls(float(data["label_gte"]), inclusive=True)
        return cls(float(data["label_gt"]))

    @classmethod
    def default_for(cls, dataset: Dataset, minimum: float | None = None) -> Relevance:
        if minimum is not None:
            return cls(minimum, inclusive=True)
        low, high = dataset.label_range
        return cls((low + high) / 2)


@dataclass(frozen=True)
class Split:
    """Queries split in two halves by a seeded hash of their text (query-disjoint, stable for
    one file whatever its row order): fit on one half, report on the other."""

    seed: int
    half: int  # 1 or 2: the half kept
    kept: int
    other: int

    def describe(self) -> str:
        return (
            f"split by query (seed {self.seed}): half {self.half} of 2 kept, {self.kept} "
            f"queries; the other half, {self.other} queries, left out"
        )

    def to_json(self) -> dict[str, int]:
        return {"seed": self.seed, "half": self.half, "of": 2, "queries": self.kept}


def query_digest(text: str) -> str:
    """A query's short hash: what calibration files record of the queries they were fitted
    on (never the text, so no judged data is copied into them)."""
    return hashlib.sha256(" ".join(text.casefold().split()).encode()).hexdigest()[:16]


def split_queries(dataset: Dataset, half: int, seed: int = 0) -> tuple[Dataset, Split]:
    """`dataset` with the queries of one half (1 or 2); every product stays in the corpus."""
    if half not in (1, 2):
        raise InvalidRequest(f"half must be 1 or 2, not {half}", field="half")
    ranked = sorted(
        dataset.queries,
        key=lambda q: hashlib.sha256(f"{seed}\x1f{query_digest(q.text)}".encode()).hexdigest(),
    )
    cut = (len(ranked) + 1) // 2
    chosen = {id(q) for q in (ranked[:cut] if half == 1 else ranked[cut:])}
    kept = [q for q in dataset.queries if id(q) in chosen]  # the file's order
    part = Dataset(f"{dataset.name}-half{half}", dataset.products, kept, dataset.columns)
    return part, Split(seed, half, len(kept), len(dataset.queries) - len(kept))
