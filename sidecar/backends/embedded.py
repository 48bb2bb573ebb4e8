"""The no-service default engine: BM25 with tantivy over in-memory indexes of JSONL catalogs.

Fields named in `search_fields` are analysed with English stemming and searched with their
boosts; every scalar field is also indexed for filters (strings as exact keywords, numbers and
booleans as fast fields), mirroring a keyword/numeric mapping in Elasticsearch.

For the drop-in demo it also answers a read-only subset of Elasticsearch's API in its shapes:
cluster info (`GET /`), count, get by id (and many ids), the mapping, index existence and
cluster health (`EmbeddedBackend.info`, `count`, `get`, `mapping`, `exists`, `health`).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import tantivy
from tantivy import FieldType, Occur, Query

from sidecar.backends.base import Filter, Hit, RangeFilter, SearchResult, TermFilter
from sidecar.backends.cjk import cjk_runs, spaced
from sidecar.deadline import Deadline
from sidecar.errors import BadQuery, InvalidRequest, NotFound

_RAW = "__raw"  # suffix of the exact-match twin of a string field
_POS = "_pos"  # position of the document in its catalog: ids in a catalog need not be unique
# The query parser treats these as syntax; shoppers' text is never syntax.
_SYNTAX = re.compile(r"[^\w\s]", re.UNICODE)
# Chinese, Japanese and Korean text has no spaces between words: to the English analyzer a
# run like "复古风牛仔外套" is one token, so no query but the whole run finds it. Each searched
# field therefore has a CJK twin (`title__cjk`) holding its CJK runs cut by tantivy's n-gram
# tokenizer into single characters and pairs ("复", "复古", "古", "古风", ...), and a query with
# CJK text also matches those n-grams there (an OR of them, best field wins, as Elasticsearch's
# best_fields). Chosen over jieba (a dictionary segmenter) by measurement on the demo's Chinese
# families (python -m bench.chinese_queries --compare): every tokenization found every relevant
# product within the rerank window of 100; precision@10 of the first stage was 0.77 for
# characters + pairs, 0.71 for pairs alone, 0.81 for jieba, but jieba costs 70 MB, a 1-2 s
# dictionary load, a dependency unreleased since 2020, and it misses what its dictionary does
# not know (brands, new product words), which n-grams cannot miss.
_CJK = "__cjk"  # suffix of the CJK twin of a searched field
_CJK_TOKENIZER = "cjk_ngram"
_CJK_ANALYZER = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.ngram(1, 2, False)).build()


class EmbeddedIndex:
    """One immutable tantivy index over a list of documents, with their sources kept in memory."""

    def __init__(
        self,
        docs: Sequence[Mapping[str, Any]],
        search_fields: Mapping[str, float],
        id_field: str = "id",
    ) -> None:
        self.search_fields = dict(search_fields)
        self._types = _infer_types(docs)
        self._schema = self._build_schema()
        self._index = tantivy.Index(self._schema)
        self._index.register_tokenizer(_CJK_TOKENIZER, _CJK_ANALYZER)
        self._ids: list[str] = []
        self._sources: list[Mapping[str, Any]] = []
        self._by_id: dict[str, int] = {}  # id -> position of its first document
        writer = self._index.writer(heap_size=50_000_000, num_threads=1)
        for position, doc in enumerate(docs):
            doc_id = str(doc.get(id_field, position))
            self._ids.append(doc_id)
            self._sources.append(doc)
            self._by_id.setdefault(doc_id, position)
            writer.add_document(self._to_tantivy(position, doc))
        writer.commit()
        writer.wait_merging_threads()
        self._index.reload()

    def __len__(self) -> int:
        return len(self._sources)

    def all_hits(self) -> list[Hit]:
        return [
            Hit(id=i, score=0.0, source=src)
            for i, src in zip(self._ids, self._sources, strict=True)
        ]

    def source(self, doc_id: str) -> Mapping[str, Any] | None:
        """The `_source` of the (first) document with this id; None when there is none."""
        position = self._by_id.get(doc_id)
        return None if position is None else self._sources[position]

    def properties(self) -> dict[str, Any]:
        """The index's fields as an Elasticsearch mapping's `properties`: searched fields are
        analysed `text`, other strings `keyword`, numbers `long`/`double`, `boolean`."""
        out: dict[str, Any] = {}
        for name, kind in sorted(self._types.items()):
            if name in self.search_fields:
                out[name] = {"type": "text", "analyzer": "english"}
            else:
                out[name] = {"type": _MAPPING_TYPES[kind]}
        for name in self.search_fields:
            out.setdefault(name, {"type": "text", "analyzer": "english"})
        return out

    def _build_schema(self) -> tantivy.Schema:
        builder = tantivy.SchemaBuilder()
        # a fast field: a window's positions are read in one call, no stored document opened
        builder.add_integer_field(_POS, stored=False, indexed=False, fast=True)
        for name in self.search_fields:
            builder.add_text_field(name, stored=False, tokenizer_name="en_stem")
            builder.add_text_field(name + _CJK, stored=False, tokenizer_name=_CJK_TOKENIZER)
        for name, kind in self._types.items():
            if kind == "str":
                builder.add_text_field(name + _RAW, stored=False, tokenizer_name="raw")
            elif kind == "int":
                builder.add_integer_field(name, stored=False, indexed=True, fast=True)
            elif kind == "float":
                builder.add_float_field(name, stored=False, indexed=True, fast=True)
            elif kind == "bool":
                builder.add_boolean_field(name, stored=False, indexed=True, fast=True)
        return builder.build()

    def _to_tantivy(self, position: int, doc: Mapping[str, Any]) -> tantivy.Document:
        out = tantivy.Document()
        out.add_integer(_POS, position)
        for name in self.search_fields:
            for text in _texts(doc.get(name)):
                out.add_text(name, spaced(text))  # "苹果iPhone15": "iphone15" is a word too
                for run in cjk_runs(text):  # one value per run: no n-gram spans two runs
                    out.add_text(name + _CJK, run)
        for name, kind in self._types.items():
            for value in _values(doc.get(name)):
                if kind == "str":
                    out.add_text(name + _RAW, str(value))
                elif (
                    kind == "int" and isinstance(value, int | float) and not isinstance(value, bool)
                ):
                    out.add_integer(name, int(value))
                elif (
                    kind == "float"
                    and isinstance(value, int | float)
                    and not isinstance(value, bool)
                ):
                    out.add_float(name, float(value))
                elif kind == "bool" and isinstance(value, bool):
                    out.add_boolean(name, value)
        return out

    def search(
        self, text: str | None, filters: Sequence[Filter], window: int, offset: int = 0
    ) -> SearchResult:
        clauses: list[tuple[Occur, Query]] = []
        # Lower case too: the parser reads AND/OR/NOT as operators; the analyzers lower-case anyway.
        cleaned = _SYNTAX.sub(" ", text or "").strip().lower()
        if cleaned:
            clauses.append((Occur.Must, self._text_query(cleaned)))
        for flt in filters:
            # Filters restrict, they do not score (like a bool `filter` clause in Elasticsearch).
            clauses.append((Occur.Must, Query.const_score_query(self._filter_query(flt), 0.0)))
        query = Query.boolean_query(clauses) if clauses else Query.all_query()
        searcher = self._index.searcher()
        result = searcher.search(query, limit=max(window, 1), count=True, offset=offset)
        positions = searcher.fast_field_values(_POS, [address for _, address in result.hits])
        ids, sources = self._ids, self._sources
        hits = []
        for (score, _), value in zip(result.hits, positions, strict=True):
            position = int(value)  # type: ignore[arg-type]  # every document has one
            hits.append(Hit(id=ids[position], score=float(score), source=sources[position]))
        return SearchResult(hits=hits[:window], total=int(getattr(result, "count", 0) or 0))

    def _text_query(self, text: str) -> Query:
        fields = list(self.search_fields)
        query = self._index.parse_query(text, fields, field_boosts=self.search_fields)
        runs = cjk_runs(text)
        grams = list(dict.fromkeys(g for run in runs for g in _CJK_ANALYZER.analyze(run)))
        if not grams:
            return query
        per_field = [
            Query.boost_query(
                Query.boolean_query(
                    [(Occur.Should, Query.term_query(self._schema, name + _CJK, g)) for g in grams]
                ),
                boost,
            )
            for name, boost in self.search_fields.items()
        ]
        return Query.boolean_query(
            [(Occur.Should, query), (Occur.Should, Query.disjunction_max_query(per_field))]
        )

    def _filter_query(self, flt: Filter) -> Query:
        name = flt.field
        kind = self._types.get(name)
        where = f"filters.{'term' if isinstance(flt, TermFilter) else 'range'}.{name}"
        if kind is None:
            raise InvalidRequest(f"unknown field {name!r} in this index", field=where)
        if isinstance(flt, TermFilter):
            return Query.term_set_query(
                self._schema, _field_name(name, kind), [_coerce(v, kind, where) for v in flt.values]
            )
        return self._range_query(flt, kind, where)

    def _range_query(self, flt: RangeFilter, kind: str, where: str) -> Query:
        if kind not in ("int", "float"):
            raise BadQuery(f"range filter on {flt.field!r}, which is not numeric", field=where)
        field_type = FieldType.Integer if kind == "int" else FieldType.Float
        lower, include_lower = (flt.gte, True) if flt.gte is not None else (flt.gt, False)
        upper, include_upper = (flt.lte, True) if flt.lte is not None else (flt.lt, False)
        cast = int if kind == "int" else float
        big = 2**62 if kind == "int" else float("inf")
        lo = cast(lower) if lower is not None else -big
        hi = cast(upper) if upper is not None else big
        if kind == "int":  # integer bounds: round inwards so gt 4.5 means >= 5
            if lower is not None and lo < lower:
                lo, include_lower = lo + 1, True
            if upper is not None and hi > upper:
                hi, include_upper = hi - 1, True
        return Query.range_query(
            self._schema,
            flt.field,
            field_type,
            lo,
            hi,
            include_lower or lower is None,
            include_upper or upper is None,
        )


class EmbeddedBackend:
    """SearchBackend over named in-memory indexes; the demo catalog is loaded as `products`."""

    name = "embedded"

    def __init__(self, search_fields: Mapping[str, float]) -> None:
        self.search_fields = dict(search_fields)
        self._indexes: dict[str, EmbeddedIndex] = {}

    def add_index(
        self,
        name: str,
        docs: Sequence[Mapping[str, Any]],
        id_field: str = "id",
        search_fields: Mapping[str, float] | None = None,
    ) -> None:
        self._indexes[name] = EmbeddedIndex(docs, search_fields or self.search_fields, id_field)

    def add_jsonl(self, name: str, path: Path, id_field: str = "id") -> None:
        self.add_index(name, read_jsonl(path), id_field)

    def all_documents(self) -> list[Hit]:
        """Every document of every index, as hits (for warming document caches)."""
        return [hit for index in self._indexes.values() for hit in index.all_hits()]

    def indexes(self) -> dict[str, int]:
        return {name: len(index) for name, index in self._indexes.items()}

    async def search(
        self,
        index: str,
        query: str | None,
        filters: Sequence[Filter],
        window: int,
        deadline: Deadline,
        raw_query: Mapping[str, Any] | None = None,
        offset: int = 0,
    ) -> SearchResult:
        found = self._indexes.get(index)
        if found is None:
            raise NotFound(
                f"no index named {index!r} in the embedded engine",
                field="index",
                known=sorted(self._indexes),
            )
        if raw_query is not None:
            raise InvalidRequest(
                "the embedded engine takes query text, not a raw query body", field="raw_query"
            )
        # tantivy searches in native code: off the event loop, so other requests go on meanwhile;
        # a search cannot be cut there, so `deadline` is kept by the caller's wait
        return await asyncio.to_thread(found.search, query, filters, window, offset)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._indexes.clear()

    # -- the read-only Elasticsearch subset of the drop-in demo ------------------------------

    def info(self, major: int = 8) -> dict[str, Any]:
        """`GET /` as Elasticsearch answers it (clients read `version.number`); `major` is the
        version the caller's client asked to be compatible with. `version.distribution` is
        OpenSearch's field: its typed clients (opensearch-java) require it, Elasticsearch's
        clients ignore it, so one answer serves both families."""
        return {
            "name": "rerank-sidecar",
            "cluster_name": "rerank-sidecar-embedded",
            "cluster_uuid": _CLUSTER_UUID,
            "version": {
                "number": f"{major}.0.0",
                "distribution": "rerank-sidecar-embedded",
                "build_flavor": "default",
                "build_type": "embedded",
                "build_hash": "tantivy",
                "build_date": "1970-01-01T00:00:00.000Z",
                "build_snapshot": False,
                "lucene_version": f"tantivy {_package_version('tantivy')}",
                "minimum_wire_compatibility_version": f"{major - 1}.17.0",
                "minimum_index_compatibility_version": f"{major - 1}.0.0",
            },
            "tagline": "You Know, for Search",
        }

    def health(self) -> dict[str, Any]:
        """`GET /_cluster/health`: one node, always green."""
        shards = len(self._indexes)
        return {
            "cluster_name": "rerank-sidecar-embedded",
            "status": "green",
            "timed_out": False,
            "number_of_nodes": 1,
            "number_of_data_nodes": 1,
            "active_primary_shards": shards,
            "active_shards": shards,
            "relocating_shards": 0,
            "initializing_shards": 0,
            "unassigned_shards": 0,
            "delayed_unassigned_shards": 0,
            "number_of_pending_tasks": 0,
            "number_of_in_flight_fetch": 0,
            "task_max_waiting_in_queue_millis": 0,
            "active_shards_percent_as_number": 100.0,
        }

    def exists(self, index: str) -> bool:
        return all(name in self._indexes for name in index.split(","))

    def count(self, index: str, text: str | None) -> dict[str, Any]:
        """`_count` of the documents matching the query text (all of them without one)."""
        found = self._index(index)
        total = len(found) if not (text or "").strip() else found.search(text, (), 1).total
        return {"count": total, "_shards": dict(ONE_SHARD)}

    def get(self, index: str, doc_id: str) -> dict[str, Any]:
        """`GET /{index}/_doc/{id}`: the document with `found: true`, or `found: false`."""
        source = self._index(index).source(doc_id)
        if source is None:
            return {"_index": index, "_id": doc_id, "found": False}
        return {
            "_index": index,
            "_id": doc_id,
            "_version": 1,
            "_seq_no": 0,
            "_primary_term": 1,
            "found": True,
            "_source": dict(source),
        }

    def mapping(self, index: str) -> dict[str, Any]:
        """`GET /{index}/_mapping` (a comma list of names too)."""
        return {
            name: {"mappings": {"properties": self._index(name).properties()}}
            for name in index.split(",")
        }

    def _index(self, name: str) -> EmbeddedIndex:
        found = self._indexes.get(name)
        if found is None:
            raise NotFound(
                f"no such index [{name}]",
                field="index",
                engine_error="index_not_found_exception",
                known=sorted(self._indexes),
            )
        return found


ONE_SHARD = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}
_MAPPING_TYPES = {"str": "keyword", "int": "long", "float": "double", "bool": "boolean"}
# One stable cluster id, as a real cluster keeps its own (22 characters like Elasticsearch's).
_CLUSTER_UUID = uuid.uuid5(uuid.NAMESPACE_URL, "rerank-sidecar/embedded").hex[:22]


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _infer_types(docs: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Field -> str|int|float|bool from the values seen; a field with mixed numbers is float."""
    kinds: dict[str, set[str]] = {}
    for doc in docs:
        for name, value in doc.items():
            for item in _values(value):
                kinds.setdefault(name, set()).add(_kind(item))
    out = {}
    for name, seen in kinds.items():
        seen.discard("other")
        if seen == {"int"} or seen == {"float"} or seen == {"bool"} or seen == {"str"}:
            out[name] = seen.pop()
        elif seen == {"int", "float"}:
            out[name] = "float"
        elif seen:
            out[name] = "str"
    return out


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "other"


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    return [v for v in value if v is not None] if isinstance(value, list) else [value]


def _texts(value: Any) -> list[str]:
    return [str(v) for v in _values(value)]


def _field_name(name: str, kind: str) -> str:
    return name + _RAW if kind == "str" else name


def _coerce(value: Any, kind: str, where: str) -> Any:
    try:
        if kind == "str":
            return str(value)
        if kind == "bool":
            if isinstance(value, bool):
                return value
            raise ValueError
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError
        return int(value) if kind == "int" else float(value)
    except ValueError:
        raise BadQuery(
            f"value {value!r} does not fit the field's type ({kind})", field=where
        ) from None
