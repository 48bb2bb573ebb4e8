"""OpenSearch calls the sidecar as its own reranker: `rerank-sidecar engine-setup opensearch`
against the real node of the test command (started with `--plugins ml`), a real sidecar served
on a socket (ML Commons calls it over HTTP), and searches sent to OpenSearch itself.

Expected orders come from the sidecar, asked directly (`/v1/rerank`) with the documents the
processor builds from the engine's page; the engine's own order from the same search without
the pipeline. Skipped, saying why, when OPENSEARCH_URL is unset or the node lacks the plugins
(the state of `python -m es_integration.engines start` says why they are missing).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from sidecar.app import create_app
from sidecar.cli import main
from sidecar.operations.engine_setup.opensearch_bodies import missing_plugins_message
from tests.conftest import make_settings
from tests.live_server import serve_in_thread

pytestmark = pytest.mark.engine

SEARCH_FIELDS = {"title": 3.0, "selling_points": 1.5, "brand.text": 2.0, "category.text": 1.0}
FIELDS = [f"{name}^{boost:g}" for name, boost in SEARCH_FIELDS.items()]
PIPELINE = "sidecar_rerank"
# A busy CI box can take seconds for a cold page; the order, not the speed, is tested here
# (the budget's derivation from the settings has unit tests).
BUDGET = ["--timeout-ms", "20000"]


@dataclass
class Sidecar:
    url: str
    server: Any
    thread: Any

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def opensearch() -> str:
    """The test command's OpenSearch node with the demo catalog and the ML plugins."""
    url = os.environ.get("OPENSEARCH_URL")
    if not url:
        pytest.skip("OPENSEARCH_URL is not set (scripts/test starts OpenSearch with --plugins ml)")
    rows = httpx.get(f"{url}/_cat/plugins?format=json", trust_env=False, timeout=30).json()
    message = missing_plugins_message(url, [row["component"] for row in rows])
    if message:
        pytest.skip(f"the ML plugins are missing ({_why_missing()}). {message}")
    from sidecar.backends.indexing import index_catalog
    from sidecar.config import EngineSettings
    from sidecar.demo import CATALOG_PATH, load_catalog

    count = httpx.get(f"{url}/products/_count", trust_env=False, timeout=30)
    if count.status_code != 200 or count.json()["count"] != len(load_catalog()):
        index_catalog(EngineSettings(urls=[url]), CATALOG_PATH, recreate=True, progress=False)
    return url


def _why_missing() -> str:
    """The reason the engine's start recorded (plugins_missing), when scripts/test says where."""
    state = os.environ.get("OPENSEARCH_STATE")
    if not state or not Path(state).is_file():
        return "not recorded (OPENSEARCH_STATE is not set)"
    missing = json.loads(Path(state).read_text()).get("plugins_missing") or {}
    if not missing:
        return "not recorded: the node was started without --plugins ml"
    name, why = next(iter(missing.items()))
    more = f", and {len(missing) - 1} more like it" if len(missing) > 1 else ""
    return f"{name}: {why}{more}"


def serve(opensearch: str, minilm: Any) -> Sidecar:
    engine = {"kind": "opensearch", "urls": [opensearch], "search_fields": SEARCH_FIELDS}
    app = create_app(make_settings(engine=engine), wait_for_model=True, scorer=minilm)
    return Sidecar(*serve_in_thread(app, start_timeout_s=120))


def engine_setup(opensearch: str, *args: str) -> str:
    result = CliRunner().invoke(main, ["engine-setup", "opensearch", "--url", opensearch, *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def sidecar(opensearch: str, minilm: Any) -> Iterator[Sidecar]:
    live = serve(opensearch, minilm)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def native(opensearch: str, sidecar: Sidecar) -> Iterator[str]:
    """The output of engine-setup run once; the objects are removed at the end."""
    yield engine_setup(opensearch, "--sidecar-url", sidecar.url, *BUDGET)
    engine_setup(opensearch, "--remove")


def search_body(text: str, size: int = 10) -> dict[str, Any]:
    return {
        "query": {"multi_match": {"query": text, "fields": FIELDS, "type": "best_fields"}},
        "size": size,
        "_source": ["title", "selling_points"],
        "ext": {"rerank": {"query_context": {"query_text": text}}},
    }


def search(url: str, body: dict[str, Any], pipeline: str | None = None) -> list[dict[str, Any]]:
    params = {"search_pipeline": pipeline} if pipeline else {}
    if not pipeline:  # `ext.rerank` means nothing without the pipeline's processor
        body = {k: v for k, v in body.items() if k != "ext"}
    answer = httpx.post(
        f"{url}/products/_search", params=params, json=body, trust_env=False, timeout=60
    )
    assert answer.status_code == 200, answer.text
    hits: list[dict[str, Any]] = answer.json()["hits"]["hits"]
    return hits


def processor_text(hit: dict[str, Any]) -> str:
    """A hit's text as the rerank processor of neural-search 3.6 builds it: its
    document_fields concatenated with nothing between them, a list of strings written as Java
    writes a list ("[a, b]"; it wraps one in another list, then joins that with spaces)."""
    source = hit["_source"]
    points = source.get("selling_points")
    if isinstance(points, list):
        points = f"[{', '.join(points)}]" if points else ""
    return str(source.get("title", "")) + str(points or "")


def sidecar_order(sidecar: Sidecar, text: str, hits: list[dict[str, Any]]) -> list[Any]:
    """(id, score) of the engine's page, in the order the sidecar's model gives it."""
    body = {"query": text, "documents": [processor_text(h) for h in hits], "timeout_ms": 20000}
    answer = httpx.post(f"{sidecar.url}/v1/rerank", json=body, trust_env=False, timeout=60)
    assert answer.status_code == 200, answer.text
    return [(hits[r["index"]]["_id"], r["relevance_score"]) for r in answer.json()["results"]]


def cache_hits(sidecar: Sidecar) -> float:
    text = httpx.get(f"{sidecar.url}/metrics", trust_env=False, timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "sidecar_cache_lookups_total" and sample.labels == {"result": "hit"}:
                return float(sample.value)
    return 0.0


def named(opensearch: str, kind: str, name: str) -> list[str]:
    """Ids of the ML objects of `kind` with this name."""
    query = {"query": {"term": {"name.keyword": name}}, "size": 100}
    answer = httpx.post(
        f"{opensearch}/_plugins/_ml/{kind}/_search", json=query, trust_env=False, timeout=30
    )
    if answer.status_code == 404:  # no object of that kind was ever made
        return []
    assert answer.status_code == 200, answer.text
    return [hit["_id"] for hit in answer.json()["hits"]["hits"]]


@pytest.mark.parametrize(
    "text", ["waterproof hiking boots", "espresso machine", "iPhone 15 Pro Max case"]
)
def test_a_search_through_the_pipeline_comes_back_in_the_sidecars_order(
    opensearch: str, sidecar: Sidecar, native: str, text: str
) -> None:
    engine_page = search(opensearch, search_body(text))
    reranked = search(opensearch, search_body(text), PIPELINE)
    expected = sidecar_order(sidecar, text, engine_page)
    # the same page (the processor reranks the hits of the page only), in the model's order
    assert [h["_id"] for h in reranked] == [doc_id for doc_id, _ in expected]
    assert [h["_score"] for h in reranked] == pytest.approx([s for _, s in expected], rel=1e-6)
    assert [h["_id"] for h in reranked] != [h["_id"] for h in engine_page], "nothing reranked"


def test_a_repeated_search_is_served_from_the_sidecars_cache(
    opensearch: str, sidecar: Sidecar, native: str
) -> None:
    body = search_body("insulated winter jacket", size=8)
    before = cache_hits(sidecar)
    first = search(opensearch, body, PIPELINE)
    after_first = cache_hits(sidecar)
    second = search(opensearch, body, PIPELINE)
    assert [h["_id"] for h in second] == [h["_id"] for h in first]
    assert all(0.0 <= h["_score"] <= 1.0 for h in second)  # the model's scores, reranked
    assert after_first - before < len(first)  # the first met pairs it had not scored
    assert cache_hits(sidecar) - after_first == len(second)  # the second: every pair cached


def test_engine_setup_run_again_changes_nothing_and_duplicates_nothing(
    opensearch: str, sidecar: Sidecar, native: str
) -> None:
    again = engine_setup(opensearch, "--sidecar-url", sidecar.url, *BUDGET)
    steps = again.splitlines()
    for line in ("connector", "model group", "model", "search pipeline"):
        assert any(s.startswith(f"  {line} {PIPELINE}") and "unchanged" in s for s in steps)
    assert "created" not in again and "deployed" not in again
    for kind in ("connectors", "models", "model_groups"):
        assert len(named(opensearch, kind, PIPELINE)) == 1, kind
    (model_id,) = named(opensearch, "models", PIPELINE)
    pipeline = httpx.get(f"{opensearch}/_search/pipeline/{PIPELINE}", trust_env=False).json()
    (processor,) = pipeline[PIPELINE]["response_processors"]
    assert processor["rerank"]["ml_opensearch"]["model_id"] == model_id
    assert "?search_pipeline=sidecar_rerank" in again and "query_text" in again


def test_with_the_sidecar_stopped_the_search_answers_in_the_engines_order(
    opensearch: str, minilm: Any
) -> None:
    pipeline = "sidecar_rerank_stopped"
    doomed = serve(opensearch, minilm)
    try:
        engine_setup(opensearch, "--sidecar-url", doomed.url, "--pipeline", pipeline, *BUDGET)
        body = search_body("waterproof hiking boots")
        engine_page = search(opensearch, body)
        assert search(opensearch, body, pipeline) != engine_page  # reranked while it runs
        doomed.stop()
        fallback = search(opensearch, body, pipeline)  # ignore_failure: no error, no rerank
        assert [(h["_id"], h["_score"]) for h in fallback] == [
            (h["_id"], h["_score"]) for h in engine_page
        ]
    finally:
        doomed.stop()
        engine_setup(opensearch, "--remove", "--pipeline", pipeline)


def test_remove_takes_the_pipeline_model_and_connector_down(
    opensearch: str, sidecar: Sidecar
) -> None:
    pipeline = "sidecar_rerank_removed"
    engine_setup(opensearch, "--sidecar-url", sidecar.url, "--pipeline", pipeline, *BUDGET)
    assert all(named(opensearch, kind, pipeline) for kind in ("connectors", "models"))
    removed = engine_setup(opensearch, "--remove", "--pipeline", pipeline)
    assert f"search pipeline {pipeline}: deleted" in removed
    for kind in ("connectors", "models", "model_groups"):
        assert named(opensearch, kind, pipeline) == [], kind
    gone = httpx.get(f"{opensearch}/_search/pipeline/{pipeline}", trust_env=False)
    assert gone.status_code == 404
    # and a search naming the pipeline is refused rather than served unreranked
    body = search_body("tent")
    refused = httpx.post(
        f"{opensearch}/products/_search",
        params={"search_pipeline": pipeline},
        json=body,
        trust_env=False,
        timeout=30,
    )
    assert refused.status_code >= 400
    again = engine_setup(opensearch, "--remove", "--pipeline", pipeline)
    assert f"search pipeline {pipeline}: absent" in again and "connector" in again
