"""The embedded tantivy engine: BM25 over text fields, keyword/numeric/boolean filters."""

import pytest

from sidecar.backends.base import RangeFilter, TermFilter
from sidecar.backends.embedded import EmbeddedBackend
from sidecar.deadline import Deadline
from sidecar.errors import BadQuery, InvalidRequest, NotFound

DOCS = [
    {
        "id": "boots",
        "title": "Waterproof hiking boots",
        "brand": "Trail",
        "category": "Footwear",
        "price": 120.0,
        "sales": 1500,
        "in_stock": True,
    },
    {
        "id": "socks",
        "title": "Hiking socks",
        "brand": "Sox",
        "category": "Socks",
        "price": 9.5,
        "sales": 300,
        "in_stock": True,
    },
    {
        "id": "jacket",
        "title": "Waterproof rain jacket",
        "brand": "Trail",
        "category": "Apparel",
        "price": 80,
        "sales": 20,
        "in_stock": False,
    },
]


@pytest.fixture
def backend() -> EmbeddedBackend:
    b = EmbeddedBackend({"title": 3.0, "brand": 1.0, "category": 1.0})
    b.add_index("products", DOCS)
    return b


async def search(b, text, filters=(), window=10, offset=0):
    result = await b.search(
        "products", text, list(filters), window, Deadline.after(1.0), offset=offset
    )
    return [h.id for h in result.hits], result.total


async def test_bm25_ranks_the_best_match_first(backend) -> None:
    ids, total = await search(backend, "waterproof hiking boots")
    assert ids[0] == "boots" and set(ids) == {"boots", "socks", "jacket"} and total == 3


async def test_stemming_matches_singular(backend) -> None:
    ids, _ = await search(backend, "boot")
    assert ids == ["boots"]


async def test_term_range_and_boolean_filters(backend) -> None:
    ids, _ = await search(
        backend, "waterproof", [TermFilter("brand", ("Trail",)), RangeFilter("price", gte=100)]
    )
    assert ids == ["boots"]
    ids, _ = await search(backend, "waterproof", [TermFilter("in_stock", (False,))])
    assert ids == ["jacket"]
    ids, _ = await search(backend, "hiking", [TermFilter("category", ("Socks", "Apparel"))])
    assert ids == ["socks"]
    ids, _ = await search(backend, "hiking", [RangeFilter("sales", gt=299.5, lt=1500)])
    assert ids == ["socks"]


async def test_filters_do_not_change_scores(backend) -> None:
    plain = await backend.search("products", "hiking", [], 10, Deadline.after(1.0))
    filtered = await backend.search(
        "products", "hiking", [TermFilter("brand", ("Sox",))], 10, Deadline.after(1.0)
    )
    assert filtered.hits[0].score == pytest.approx({h.id: h.score for h in plain.hits}["socks"])


async def test_window_and_offset(backend) -> None:
    first, _ = await search(backend, "waterproof hiking", window=1)
    second, _ = await search(backend, "waterproof hiking", window=1, offset=1)
    assert len(first) == 1 and first != second


async def test_query_syntax_is_treated_as_text(backend) -> None:
    ids, _ = await search(backend, 'boots" AND (title:[ OR')
    assert ids[0] == "boots"


async def test_errors_name_index_and_field(backend) -> None:
    with pytest.raises(NotFound):
        await search_index(backend, "nope")
    with pytest.raises(InvalidRequest) as err:
        await search(backend, "x", [TermFilter("colour", ("red",))])
    assert err.value.field == "filters.term.colour"
    with pytest.raises(BadQuery):
        await search(backend, "x", [RangeFilter("brand", gte=1)])
    with pytest.raises(BadQuery):
        await search(backend, "x", [TermFilter("price", ("cheap",))])


async def search_index(b, index):
    return await b.search(index, "x", [], 10, Deadline.after(1.0))
