"""The thin warm path: what the engine is asked for, documents made once per product, the
engine client made once per timeout step, answers written and read as before."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from fastapi.responses import JSONResponse

from sidecar.api.drop_in.wire import EngineJSONResponse, Wire
from sidecar.backends import dsl
from sidecar.backends.base import Hit
from sidecar.backends.elasticsearch import ElasticsearchBackend, FastJsonSerializer
from sidecar.backends.embedded import EmbeddedBackend
from sidecar.backends.opensearch import FastJSONSerializer, OpenSearchBackend
from sidecar.cache.memory import MemoryCache
from sidecar.config import EngineSettings, FieldMap
from sidecar.deadline import Deadline
from sidecar.documents import DocumentMemo, from_hit
from sidecar.pipeline import Pipeline, SearchParams
from sidecar.query import Query
from sidecar.rules.store import RuleStore
from sidecar.scoring.minilm import MiniLMScorer
from sidecar.scoring_service import ScoringService

NEEDED = FieldMap().source_fields()


@pytest.mark.parametrize(
    ("requested", "sent"),
    [
        # excludes that cannot touch what the reranker reads go to the engine
        ({"excludes": ["description", "vectors.*"]}, {"excludes": ["description", "vectors.*"]}),
        ({"exclude": "description"}, {"excludes": ["description"]}),
        # those that could are applied to the answer only: the model needs the fields
        ({"excludes": ["selling_points"]}, True),
        ({"excludes": ["t*", "*_url", "title.raw", "bran"]}, True),
        ({"excludes": ["t*", "desc*"]}, {"excludes": ["desc*"]}),
        (
            {"includes": ["title", "description"], "excludes": ["description.long", "sel*"]},
            {"includes": ["title", "description", *NEEDED[1:]], "excludes": ["description.long"]},
        ),
    ],
)
def test_only_harmless_excludes_reach_the_engine(requested: Any, sent: Any) -> None:
    body = dsl.build_body("q", [], 5, 0, {"title": 1.0}, NEEDED, {"_source": requested})
    assert body["_source"] == sent


def hit(doc_id: str, title: str, **extra: Any) -> Hit:
    return Hit(id=doc_id, score=1.0, source={"title": title, **extra}, index="products")


def test_a_product_seen_again_gets_the_document_made_the_first_time() -> None:
    memo, fields = DocumentMemo(size=2), FieldMap()
    first = memo.of([hit("1", "Boots"), hit("2", "Socks")], fields)
    assert first == [from_hit(hit("1", "Boots"), fields), from_hit(hit("2", "Socks"), fields)]
    again = memo.of([hit("2", "Socks"), hit("1", "Boots")], fields)  # equal sources, new dicts
    assert again[0] is first[1] and again[1] is first[0]
    changed = memo.of([hit("1", "Boots, waterproof")], fields)[0]
    assert changed.title == "Boots, waterproof" and changed.content_hash != first[0].content_hash
    # what the field map does not read does not matter (the drop-in fetches all of it); a
    # business field set to null is not one left out
    assert memo.of([hit("1", "Boots, waterproof", notes="x")], fields)[0] is changed
    nulled = memo.of([hit("1", "Boots, waterproof", price=None)], fields)[0]
    assert nulled is not changed and nulled.fields == {"price": None}
    other_index = Hit(id="1", score=1.0, source={"title": "Tent"}, index="archive")
    assert memo.of([other_index], fields)[0].title == "Tent"
    assert len(memo._known) == 2  # bounded: the least recent went
    assert memo.of([hit("1", "Boots")], FieldMap(title="name"))[0].title == ""  # new field map


def test_the_memo_keeps_answers_the_same(minilm: MiniLMScorer) -> None:
    backend = EmbeddedBackend({"title": 1.0})
    backend.add_index(
        "products",
        [{"id": f"p{i}", "title": t} for i, t in enumerate(["hiking boots", "boots", "socks"])],
    )
    pipeline = Pipeline(backend, ScoringService(minilm, MemoryCache()), RuleStore(), FieldMap())
    params = SearchParams(index="products", query=Query("boots"), size=1)

    async def twice() -> Any:
        return (
            await pipeline.search(params, Deadline.after(2.0)),
            await pipeline.search(params, Deadline.after(2.0)),
        )

    first, second = asyncio.run(twice())
    assert [h.document for h in first.hits] == [h.document for h in second.hits]
    assert first.hits[0].document is second.hits[0].document
    assert len(first.hits) == 1 and first.window == 2


def test_the_page_beyond_the_window_continues_in_engine_order(minilm: MiniLMScorer) -> None:
    backend = EmbeddedBackend({"title": 1.0})
    titles = [f"boots model {i}" for i in range(6)]
    backend.add_index("products", [{"id": f"p{i}", "title": t} for i, t in enumerate(titles)])
    pipeline = Pipeline(backend, ScoringService(minilm, MemoryCache()), RuleStore(), FieldMap())
    full = asyncio.run(
        pipeline.search(
            SearchParams(index="products", query=Query("boots"), window=3, size=6),
            Deadline.after(2.0),
        )
    )
    for offset in range(6):
        page = asyncio.run(
            pipeline.search(
                SearchParams(
                    index="products", query=Query("boots"), window=3, offset=offset, size=2
                ),
                Deadline.after(2.0),
            )
        )
        assert [h.document.id for h in page.hits] == [
            h.document.id for h in full.hits[offset : offset + 2]
        ]
        assert [h.ranked is None for h in page.hits] == [
            h.ranked is None for h in full.hits[offset : offset + 2]
        ]


def test_one_elasticsearch_client_per_timeout_step() -> None:
    backend = ElasticsearchBackend(
        EngineSettings(kind="elasticsearch", urls=["http://127.0.0.1:1"]), FieldMap()
    )
    a, b = backend._with_timeout(1.191), backend._with_timeout(1.194)
    assert a is b and a._request_timeout == 1.19
    assert backend._with_timeout(0.0371)._request_timeout == 0.037
    assert backend._with_timeout(0.00001)._request_timeout == 0.001
    assert backend._with_timeout(2.5) is not a
    assert isinstance(
        backend._client.transport.serializers.get_serializer("application/vnd.elasticsearch+json"),
        FastJsonSerializer,
    )
    asyncio.run(backend.close())


def test_the_clients_own_request_lines_are_left_out_unless_asked_for() -> None:
    for name in ("elastic_transport.transport", "opensearch"):
        logging.getLogger(name).setLevel(logging.NOTSET)
    es = ElasticsearchBackend(EngineSettings(kind="elasticsearch"), FieldMap())
    logging.getLogger("opensearch").setLevel(logging.DEBUG)  # an operator's choice stays
    os_backend = OpenSearchBackend(EngineSettings(kind="opensearch"), FieldMap())
    assert logging.getLogger("elastic_transport.transport").level == logging.WARNING
    assert logging.getLogger("opensearch").level == logging.DEBUG
    assert FastJSONSerializer().loads('{"n": 123456789012345678901234}') == {
        "n": 123456789012345678901234
    }
    asyncio.run(es.close())
    asyncio.run(os_backend.close())
    logging.getLogger("opensearch").setLevel(logging.NOTSET)


def test_drop_in_answers_are_the_json_starlette_writes() -> None:
    body = {"hits": {"hits": [{"_source": {"title": "防水登山靴"}, "_score": 0.25}]}, "n": 10**20}
    ours = Wire("application/json").respond(body)
    assert isinstance(ours, EngineJSONResponse)
    assert ours.body == JSONResponse(body).body
    with pytest.raises(ValueError, match="Out of range float"):
        Wire("application/json").respond({"_score": float("nan")})
