"""Chinese queries and stemming on Elasticsearch/OpenSearch without an engine: the DSL searches
the `.cjk` sub-fields, the two templates agree on everything but the analysis-common analyzers,
and the index is created from the one the engine can run."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from es_integration.templates import (
    ANALYSIS_COMMON_ANALYZERS,
    CJK_SUBFIELD,
    PRODUCTS_CJK_TEMPLATE,
    PRODUCTS_TEMPLATE,
)
from sidecar.backends import dsl
from sidecar.backends.base import TermFilter
from sidecar.backends.indexing import (
    IndexingError,
    MissingAnalyzer,
    create_index,
    create_product_index,
    load_template,
)
from sidecar.config import EngineSettings

FIELDS = {"title": 3.0, "selling_points": 1.5, "brand.text": 2.0, "category": 1.0}


def body(text: str, filters: list[Any] | None = None) -> dict[str, Any]:
    return dsl.build_body(text, filters or [], 100, 0, FIELDS, ["title"])


def plain(text: str) -> dict[str, Any]:
    fields = ["title^3", "selling_points^1.5", "brand.text^2", "category^1"]
    return {"multi_match": {"query": text, "fields": fields, "type": "best_fields"}}


def test_an_english_query_is_the_plain_multi_match() -> None:
    assert body("hiking boots")["query"] == plain("hiking boots")


@pytest.mark.parametrize("text", ["复古风牛仔外套", "iPhone 15 Pro Max 手机壳", "ランニング"])
def test_a_query_with_cjk_text_also_searches_the_cjk_sub_fields(text: str) -> None:
    query = body(text)["query"]
    main, pairs = query["bool"]["should"]
    assert main == plain(text)
    assert pairs["multi_match"]["query"] == text
    assert pairs["multi_match"]["fields"] == [
        "title.cjk^3",
        "selling_points.cjk^1.5",
        "brand.cjk^2",  # a keyword's full-text sub-fields are siblings: brand.text, brand.cjk
        "category.cjk^1",
    ]
    assert set(query["bool"]) == {"should"}  # no must: either clause may match


def test_filters_wrap_the_cjk_query() -> None:
    query = body("防水登山靴", [TermFilter("in_stock", (True,))])["query"]
    assert query["bool"]["filter"] == [{"term": {"in_stock": True}}]
    (must,) = query["bool"]["must"]
    assert len(must["bool"]["should"]) == 2


def _sub_fields(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{name}.{sub}": spec
        for name, field in template["mappings"]["properties"].items()
        for sub, spec in field.get("fields", {}).items()
    }


def _analyzers(node: Any, path: str = "") -> dict[str, str]:
    """Every `analyzer` a template names, by where: `mappings.properties.title`, ..."""
    if isinstance(node, list):
        node = {str(i): item for i, item in enumerate(node)}
    if not isinstance(node, dict):
        return {}
    found = {path: node["analyzer"]} if isinstance(node.get("analyzer"), str) else {}
    for key, value in node.items():
        found |= _analyzers(value, f"{path}.{key}" if path else key)
    return found


def test_the_cjk_template_is_the_core_one_plus_stemming_and_cjk_sub_fields() -> None:
    core, cjk = load_template(PRODUCTS_TEMPLATE), load_template(PRODUCTS_CJK_TEMPLATE)
    added = {k: v for k, v in _sub_fields(cjk).items() if k not in _sub_fields(core)}
    assert added and all(k.endswith(f".{CJK_SUBFIELD}") for k in added)
    assert all(spec == {"type": "text", "analyzer": "cjk"} for spec in added.values())
    # the core has only `standard`; the rest is what an engine without analysis-common refuses
    assert set(_analyzers(core).values()) == {"standard"}
    assert set(_analyzers(cjk).values()) == {"standard", *ANALYSIS_COMMON_ANALYZERS}
    # English stemming on the descriptive text and on dynamically mapped strings; names
    # (brand, color) keep the standard analyzer
    stemmed = {where for where, name in _analyzers(cjk).items() if name == "english"}
    props = "mappings.properties"
    assert stemmed == {
        f"{props}.title",
        f"{props}.selling_points",
        f"{props}.category.fields.text",
        "mappings.dynamic_templates.0.prose.mapping",
    }
    # without them the templates are the same file, so they cannot drift apart
    assert cjk["mappings"].pop("dynamic_templates") == [
        {
            "prose": {
                "match_mapping_type": "string",
                "mapping": {
                    "type": "text",
                    "analyzer": "english",
                    # what both engines map a string to by default, but stemmed
                    "fields": {"keyword": {"type": "keyword", "ignore_above": 256}},
                },
            }
        }
    ]
    for field in cjk["mappings"]["properties"].values():
        field.get("fields", {}).pop(CJK_SUBFIELD, None)
        if field.get("fields") == {}:
            del field["fields"]
        for spec in [field, *field.get("fields", {}).values()]:
            if spec.get("analyzer") == "english":
                spec["analyzer"] = "standard"
    assert cjk == core
    # every field the sidecar searches by default, and docs/engines.md's, has its twin
    defaults = EngineSettings().search_fields
    for name in [*defaults, "brand.text", "category.text"]:
        assert dsl.cjk_field(name) in added, name


class Engine:
    """An engine's index API as far as index creation goes, answering as the real ones do
    (the messages are Elasticsearch 9.5.3's and OpenSearch 3.6.0's)."""

    def __init__(self, has_analysis_common: bool, other_error: str | None = None) -> None:
        self.has_analysis_common, self.other_error = has_analysis_common, other_error
        self.created: dict[str, Any] | None = None
        self.puts = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD":
            return httpx.Response(200 if self.created else 404)
        if request.method == "DELETE":
            self.created = None
            return httpx.Response(200, json={"acknowledged": True})
        self.puts += 1
        sent = json.loads(request.content)
        if self.other_error:
            return httpx.Response(400, json={"error": {"type": "x", "reason": self.other_error}})
        named = set(_analyzers(sent).values()) & set(ANALYSIS_COMMON_ANALYZERS)
        if not self.has_analysis_common and named:
            # Elasticsearch names the first one it meets: `english`, in the dynamic template
            name = "english" if "english" in named else "cjk"
            reason = (
                f"Failed to parse mapping: analyzer [{name}] has not been configured in mappings"
            )
            return httpx.Response(
                400, json={"error": {"type": "mapper_parsing_exception", "reason": reason}}
            )
        self.created = sent
        return httpx.Response(200, json={"acknowledged": True})


def client(engine: Engine) -> httpx.Client:
    return httpx.Client(base_url="http://engine", transport=httpx.MockTransport(engine))


def test_an_engine_with_analysis_common_gets_the_stemmed_cjk_template() -> None:
    engine = Engine(has_analysis_common=True)
    created, template, note = create_product_index(client(engine), "products")
    assert created and template == PRODUCTS_CJK_TEMPLATE
    assert "English stemming" in note and "`cjk` analyzer" in note
    assert engine.created is not None
    assert engine.created["mappings"] == load_template(PRODUCTS_CJK_TEMPLATE)["mappings"]


def test_an_engine_without_it_gets_the_core_template_and_the_reason() -> None:
    engine = Engine(has_analysis_common=False)
    created, template, note = create_product_index(
        client(engine), "products", recreate=True, replicas=2
    )
    assert created and template == PRODUCTS_TEMPLATE and engine.puts == 2
    assert "no `english` analyzer" in note and "no stemming" in note
    assert "single characters" in note
    assert engine.created is not None and engine.created["settings"]["number_of_replicas"] == 2
    assert engine.created["mappings"] == load_template(PRODUCTS_TEMPLATE)["mappings"]


def test_an_existing_index_is_kept_with_its_mapping() -> None:
    engine = Engine(has_analysis_common=True)
    engine.created = {"mappings": {}}
    assert create_product_index(client(engine), "products")[:2] == (False, None)
    assert engine.puts == 0


def test_another_refusal_is_not_taken_for_a_missing_analyzer() -> None:
    engine = Engine(has_analysis_common=True, other_error="index [products] already exists")
    with pytest.raises(IndexingError, match="already exists"):
        create_product_index(client(engine), "products")
    assert engine.puts == 1


def test_an_analyzer_outside_analysis_common_is_not_taken_for_its_absence() -> None:
    # a broken template (a typo) is reported, not covered by the core template
    reason = "Failed to parse mapping: analyzer [englsh] has not been configured in mappings"
    engine = Engine(has_analysis_common=True, other_error=reason)
    with pytest.raises(IndexingError, match="no `englsh` analyzer"):
        create_product_index(client(engine), "products")
    assert engine.puts == 1


# Elasticsearch 9.5.3 (integ-test-zip) refusing products-cjk.json: the dynamic template first,
# the missing analyzer in its cause
ES_REFUSAL = {
    "error": {
        "type": "mapper_parsing_exception",
        "reason": "Failed to parse mapping: dynamic template [prose] has invalid content [...], "
        "attempted to validate it with the following match_mapping_type: [string]",
        "caused_by": {
            "type": "illegal_argument_exception",
            "reason": "dynamic template [prose] has invalid content [...]",
            "caused_by": {
                "type": "illegal_argument_exception",
                "reason": "analyzer [english] has not been configured in mappings",
            },
        },
    },
    "status": 400,
}


def test_a_missing_analyzer_is_found_in_the_engines_nested_refusal() -> None:
    def engine(request: httpx.Request) -> httpx.Response:
        return (
            httpx.Response(404)
            if request.method == "HEAD"
            else httpx.Response(400, json=ES_REFUSAL)
        )

    http = httpx.Client(base_url="http://engine", transport=httpx.MockTransport(engine))
    with pytest.raises(MissingAnalyzer) as caught:
        create_index(http, "products", load_template(PRODUCTS_CJK_TEMPLATE))
    assert caught.value.analyzer == "english"
