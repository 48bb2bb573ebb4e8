"""Create the product index and bulk-load a JSONL catalog into Elasticsearch or OpenSearch.

Both engines speak the same index and `_bulk` REST API, so this talks HTTP directly (httpx) with
the engine settings' URL, auth and TLS options. A document the engine refuses, or a catalog line
that is not JSON, is reported with its line number, id and reason; the load goes on.

Without a template of the caller's, the index gets `products-cjk.json` (English stemming with
the `english` analyzer, and a `.cjk` sub-field for Chinese, Japanese and Korean text) where the
engine has the analysis-common module, and `products.json` (the core's `standard` analyzer: no
stemming, no `.cjk`) where it does not (Elasticsearch's integ-test-zip). The engine's own refusal
of one of those analyzers (`ANALYSIS_COMMON_ANALYZERS`) decides, not the engine's kind or
version: a full Elasticsearch distribution gets the stemmed template too, and no extra privilege
or version table is needed.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from es_integration.templates import (
    ANALYSIS_COMMON_ANALYZERS,
    PRODUCTS_CJK_TEMPLATE,
    PRODUCTS_TEMPLATE,
    with_vectors,
)
from sidecar.config import EngineSettings, Settings

Entry = tuple[int, dict[str, Any] | None, str]  # (line number, document or None, error)
VECTOR_CHUNK = 256  # documents encoded at a time while loading


@dataclass(frozen=True)
class Vectors:
    """The vector field written beside each document (`index --vectors`): the engine kind
    (its mapping type), the field, the dimensions, and what encodes a list of documents."""

    engine: str
    field: str
    dims: int
    embed: Callable[[Sequence[Mapping[str, Any]]], list[list[float]]]

    def template(self, template: dict[str, Any]) -> dict[str, Any]:
        return with_vectors(template, self.engine, self.field, self.dims)

    def attach(self, entries: Iterable[Entry]) -> Iterator[Entry]:
        """The entries with each document's vector in `field`, encoded a chunk at a time."""
        chunk: list[Entry] = []

        def flush() -> Iterator[Entry]:
            docs = [doc for _, doc, _ in chunk if doc is not None]
            vectors = iter(self.embed(docs)) if docs else iter(())
            for number, doc, error in chunk:
                if doc is not None:
                    doc = {**doc, self.field: next(vectors)}
                yield number, doc, error

        for entry in entries:
            chunk.append(entry)
            if len(chunk) >= VECTOR_CHUNK:
                yield from flush()
                chunk = []
        yield from flush()


class IndexingError(RuntimeError):
    """The index cannot be created or the engine cannot be reached (the load cannot start)."""


class MissingAnalyzer(IndexingError):
    """The engine refused the template for an analyzer it does not have (`analyzer`)."""

    def __init__(self, message: str, analyzer: str) -> None:
        super().__init__(message)
        self.analyzer = analyzer


# Both engines: "analyzer [english] has not been configured in mappings" (also nested in a
# dynamic template's refusal).
_MISSING_ANALYZER = re.compile(r"analyzer \[([^\]]+)\] (?:has not been configured|not found)")


@dataclass(frozen=True)
class Failure:
    line: int
    doc_id: str | None
    reason: str


@dataclass
class LoadReport:
    index: str
    indexed: int = 0
    failures: list[Failure] = field(default_factory=list)
    created: bool = False
    seconds: float = 0.0
    template: Path | None = None  # what the index was created from; None: it existed
    note: str = ""  # why that template

    @property
    def total(self) -> int:
        return self.indexed + len(self.failures)


def engine_client(settings: EngineSettings, url: str | None = None) -> httpx.Client:
    headers = {"content-type": "application/json"}
    auth: httpx.BasicAuth | None = None
    if settings.api_key is not None:
        headers["authorization"] = f"ApiKey {settings.api_key.get_secret_value()}"
    elif settings.username is not None:
        password = settings.password.get_secret_value() if settings.password else ""
        auth = httpx.BasicAuth(settings.username, password)
    verify: bool | str = str(settings.ca_file) if settings.ca_file else settings.verify_certs
    return httpx.Client(
        base_url=(url or settings.urls[0]).rstrip("/"),
        headers=headers,
        auth=auth,
        verify=verify,
        timeout=max(settings.request_timeout_s, 30.0),  # bulk requests take longer than searches
        trust_env=False,
    )


def create_index(
    client: httpx.Client,
    index: str,
    template: dict[str, Any],
    *,
    recreate: bool = False,
    replicas: int | None = None,
) -> bool:
    """Create `index` from the template; False when it already exists (and is kept)."""
    exists = _call(client, "HEAD", f"/{index}").status_code == 200
    if exists and not recreate:
        return False
    if exists:
        _check(_call(client, "DELETE", f"/{index}"), f"delete index {index!r}")
    body = json.loads(json.dumps(template))  # a copy we may change
    if replicas is not None:
        body.setdefault("settings", {})["number_of_replicas"] = replicas
    response = _call(client, "PUT", f"/{index}", json=body)
    missing = _MISSING_ANALYZER.search(response.text) if response.status_code == 400 else None
    if missing:
        name = missing[1]
        raise MissingAnalyzer(f"create index {index!r}: this engine has no `{name}` analyzer", name)
    _check(response, f"create index {index!r}")
    return True


STEMMED_NOTE = (
    'products-cjk.json: English stemming (the `english` analyzer: "boot" matches "boots"), '
    "CJK text also in `.cjk` sub-fields (the `cjk` analyzer)"
)


def core_note(analyzer: str) -> str:
    """Why products.json: the analyzer the engine refused."""
    return (
        f"products.json: this engine has no `{analyzer}` analyzer (no analysis-common module), "
        'so no stemming ("boot" does not match "boots") and CJK text is matched by single '
        "characters (the standard analyzer)"
    )


def create_product_index(
    client: httpx.Client,
    index: str,
    *,
    recreate: bool = False,
    replicas: int | None = None,
    vectors: Vectors | None = None,
) -> tuple[bool, Path | None, str]:
    """Create `index` from products-cjk.json, or from products.json where the engine refuses
    one of its analysis-common analyzers (`english`, `cjk`): (created, template, why);
    (False, None, ...) when it exists and is kept. Any other refusal is an IndexingError."""
    try:
        created = create_index(
            client,
            index,
            _vectored(load_template(PRODUCTS_CJK_TEMPLATE), vectors),
            recreate=recreate,
            replicas=replicas,
        )
    except MissingAnalyzer as exc:
        if exc.analyzer not in ANALYSIS_COMMON_ANALYZERS:
            raise  # not the module's absence: a broken template is not covered up
        # Nothing was created (a recreate already deleted the old index): the core template.
        create_index(
            client, index, _vectored(load_template(PRODUCTS_TEMPLATE), vectors), replicas=replicas
        )
        return True, PRODUCTS_TEMPLATE, core_note(exc.analyzer)
    if not created:
        return False, None, "the existing index and its mapping are kept"
    return True, PRODUCTS_CJK_TEMPLATE, STEMMED_NOTE


def _vectored(template: dict[str, Any], vectors: Vectors | None) -> dict[str, Any]:
    return template if vectors is None else vectors.template(template)


def read_catalog(path: Path) -> Iterator[Entry]:
    """(line number, document or None, error) for every non-empty line."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, None, f"not JSON: {exc.msg} at column {exc.colno}"
                continue
            if not isinstance(doc, dict):
                yield number, None, f"not a JSON object but {type(doc).__name__}"
                continue
            yield number, doc, ""


def bulk_load(
    client: httpx.Client,
    index: str,
    entries: Iterable[Entry],
    total: int,
    *,
    id_field: str = "id",
    batch_size: int = 500,
    progress: bool = True,
) -> LoadReport:
    report = LoadReport(index=index)
    started = time.perf_counter()
    batch: list[tuple[int, dict[str, Any]]] = []
    with tqdm(total=total, unit="doc", desc=f"index {index}", disable=not progress) as bar:
        for number, doc, error in entries:
            if doc is None:
                report.failures.append(Failure(number, None, error))
                bar.update(1)
                continue
            batch.append((number, doc))
            if len(batch) >= batch_size:
                _send(client, index, batch, id_field, report)
                bar.update(len(batch))
                batch = []
        if batch:
            _send(client, index, batch, id_field, report)
            bar.update(len(batch))
    _check(_call(client, "POST", f"/{index}/_refresh"), f"refresh index {index!r}")
    report.seconds = time.perf_counter() - started
    return report


def _send(
    client: httpx.Client,
    index: str,
    batch: list[tuple[int, dict[str, Any]]],
    id_field: str,
    report: LoadReport,
) -> None:
    lines = []
    for _, doc in batch:
        action: dict[str, Any] = {"_index": index}
        if doc.get(id_field) is not None:
            action["_id"] = str(doc[id_field])
        lines.append(json.dumps({"index": action}))
        lines.append(json.dumps(doc, ensure_ascii=False))
    response = _call(
        client,
        "POST",
        "/_bulk",
        content=("\n".join(lines) + "\n").encode(),
        headers={"content-type": "application/x-ndjson"},
    )
    _check(response, "bulk load")
    items = response.json().get("items", [])
    for (number, doc), item in zip(batch, items, strict=True):
        result: dict[str, Any] = next(iter(item.values()), {})
        error = result.get("error")
        if error is None:
            report.indexed += 1
            continue
        reason = f"{error.get('type', '')}: {error.get('reason', '')}"
        cause = error.get("caused_by") or {}
        if cause.get("reason"):
            reason += f" ({cause['reason']})"
        doc_id = doc.get(id_field)
        report.failures.append(Failure(number, str(doc_id) if doc_id is not None else None, reason))


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise IndexingError(f"cannot reach the engine at {client.base_url}: {exc}") from exc


def _check(response: httpx.Response, what: str) -> None:
    if response.status_code < 300:
        return
    try:
        error = response.json().get("error")
    except ValueError:
        error = response.text[:300]
    if isinstance(error, dict):
        error = f"{error.get('type')}: {error.get('reason')}"
    raise IndexingError(f"{what} failed ({response.status_code}): {error}")


def load_template(path: Path | None = None) -> dict[str, Any]:
    template_path = Path(path) if path else PRODUCTS_TEMPLATE
    try:
        loaded = json.loads(template_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexingError(f"{template_path}: cannot read the index template: {exc}") from exc
    if not isinstance(loaded, dict):
        raise IndexingError(f"{template_path}: the index template must be a JSON object")
    return loaded


def index_catalog(
    settings: EngineSettings,
    catalog: Path | None = None,
    *,
    index: str | None = None,
    template: Path | None = None,
    recreate: bool = False,
    replicas: int | None = None,
    id_field: str = "id",
    batch_size: int = 500,
    progress: bool = True,
    vectors: Vectors | None = None,
    vectors_optional: bool = False,
) -> LoadReport:
    """Create the index (unless it exists and `recreate` is off) and load the catalog (the
    bundled demo catalog when none is given); with `vectors`, each document's vector too. An
    existing index without the vector field would map the vectors as plain numbers: the load
    is refused (IndexingError), or with `vectors_optional` goes on without them and says so in
    the report's note."""
    if catalog is None:
        from sidecar.demo import CATALOG_PATH

        catalog = CATALOG_PATH
    name = index or settings.default_index
    with engine_client(settings) as client:
        created, chosen, note = _create(client, name, template, recreate, replicas, vectors)
        problem = None if created or vectors is None else _unmapped(client, name, vectors)
        if problem is not None:
            if not vectors_optional:
                raise IndexingError(f"{problem}: --recreate makes it with the field")
            vectors, note = None, f"no vectors written: {problem} (--recreate makes it with it)"
        with catalog.open(encoding="utf-8") as handle:
            total = sum(1 for line in handle if line.strip())
        entries = read_catalog(catalog)
        report = bulk_load(
            client,
            name,
            entries if vectors is None else vectors.attach(entries),
            total,
            id_field=id_field,
            batch_size=batch_size,
            progress=progress,
        )
    report.created, report.template, report.note = created, chosen, note
    return report


def _unmapped(client: httpx.Client, index: str, vectors: Vectors) -> str | None:
    """Why the existing `index` cannot take `vectors` (None: its mapping has the field)."""
    from urllib.parse import quote

    from sidecar.backends import dsl

    answer = client.get(f"/{quote(index, safe='')}/_mapping/field/{quote(vectors.field)}")
    if answer.status_code != 200:
        return f"the mapping of {index!r} cannot be read ({answer.status_code})"
    kind = "dense_vector" if vectors.engine == "elasticsearch" else "knn_vector"
    return dsl.vector_field_problem(answer.json(), vectors.field, vectors.dims, kind)


def _create(
    client: httpx.Client,
    index: str,
    template: Path | None,
    recreate: bool,
    replicas: int | None = None,
    vectors: Vectors | None = None,
) -> tuple[bool, Path | None, str]:
    if template is None:
        return create_product_index(
            client, index, recreate=recreate, replicas=replicas, vectors=vectors
        )
    created = create_index(
        client,
        index,
        _vectored(load_template(template), vectors),
        recreate=recreate,
        replicas=replicas,
    )
    return created, Path(template) if created else None, "the given mapping" if created else ""


async def load_documents(
    settings: Settings,
    index: str,
    docs: Sequence[Mapping[str, Any]],
    *,
    recreate: bool = False,
    template: Path | None = None,
    vectors: Vectors | None = None,
) -> LoadReport:
    """Create `index` and load in-memory documents (evaluation corpora), with `vectors` each
    one's vector too; off the event loop."""

    def load() -> LoadReport:
        entries: Iterable[Entry] = ((n, dict(doc), "") for n, doc in enumerate(docs, start=1))
        if vectors is not None:
            entries = vectors.attach(entries)
        with engine_client(settings.engine) as client:
            created, chosen, note = _create(client, index, template, recreate, vectors=vectors)
            report = bulk_load(
                client, index, entries, len(docs), id_field=settings.fields.id or "id"
            )
        report.created, report.template, report.note = created, chosen, note
        return report

    return await asyncio.to_thread(load)
