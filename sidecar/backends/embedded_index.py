"""One in-memory tantivy index over a list of documents: BM25 over the searched fields, filters
over the others.

Fields named in `search_fields` are analysed with English stemming (and a CJK twin) and searched
with their boosts; every scalar field is also indexed for filters (strings as exact keywords,
numbers and booleans as fast fields), mirroring a keyword/numeric mapping in Elasticsearch. The
documents' sources stay in memory, so a hit carries its `_source` without a stored-field read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import tantivy
from tantivy import FieldType, Occur, Query

from sidecar.backends.base import Filter, Hit, RangeFilter, SearchResult, TermFilter
from sidecar.backends.cjk import cjk_runs, spaced
from sidecar.errors import BadQuery, InvalidRequest

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
        self._vectors: np.ndarray | None = None  # row = position; normalised (set_vectors)
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

    @property
    def vector_dims(self) -> int | None:
        """The dimensions of the vectors held, None without them."""
        return None if self._vectors is None else int(self._vectors.shape[1])

    def set_vectors(self, vectors: Sequence[Sequence[float]]) -> None:
        """One vector per document, in catalog order (normalised here, so a dot product is the
        cosine)."""
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(self._sources):
            raise ValueError(f"{len(self._sources)} vectors needed, got shape {matrix.shape}")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self._vectors = matrix / np.where(norms > 0, norms, 1.0)

    def vector_search(
        self, vector: Sequence[float], filters: Sequence[Filter], k: int
    ) -> SearchResult:
        """The `k` documents of highest cosine with `vector` among those the filters pass.
        Exact: one matrix-vector product over the catalog (a few ms for 10k products of 384
        dimensions), so no approximate index and its recall to explain."""
        if self._vectors is None:
            raise InvalidRequest("this index holds no vectors", field="retrieval")
        query = np.asarray(vector, dtype=np.float32)
        cosines = self._vectors @ (query / (np.linalg.norm(query) or 1.0))
        if filters:
            allowed = self._filtered_positions(filters)
            candidates, cosines = allowed, cosines[allowed]
        else:
            candidates = np.arange(len(cosines))
        take = min(max(k, 0), len(candidates))
        if take == 0:
            return SearchResult(hits=[], total=0)
        top = np.argpartition(-cosines, take - 1)[:take]
        # best first; equal cosines in catalog order
        top = top[np.lexsort((candidates[top], -cosines[top]))]
        hits = [
            Hit(
                id=self._ids[int(candidates[i])],
                score=float(cosines[i]),
                source=self._sources[int(candidates[i])],
            )
            for i in top
        ]
        return SearchResult(hits=hits, total=len(candidates))

    def _filtered_positions(self, filters: Sequence[Filter]) -> np.ndarray:
        clauses = [(Occur.Must, self._filter_query(flt)) for flt in filters]
        searcher = self._index.searcher()
        found = searcher.search(Query.boolean_query(clauses), limit=max(len(self), 1))
        positions = searcher.fast_field_values(_POS, [address for _, address in found.hits])
        return np.sort(np.asarray([int(p) for p in positions], dtype=np.int64))  # type: ignore[arg-type]

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


_MAPPING_TYPES = {"str": "keyword", "int": "long", "float": "double", "bool": "boolean"}


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
