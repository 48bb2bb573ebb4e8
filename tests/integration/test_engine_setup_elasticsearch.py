"""`engine-setup elasticsearch` against what can run here.

- The exact request Elasticsearch's `custom` inference service sends, built from the endpoint
  the command creates the way the service fills its template (`${query}`: the query as a JSON
  string; `${input}`: the documents as a JSON array of strings; a placeholder left over is an
  error), answered by a real sidecar over HTTP and parsed with the endpoint's own JSONPath
  expressions (jsonpath-ng), as the service parses it.
- The command against the real Elasticsearch test node (ES_URL): the integ-test-zip has no
  x-pack, so the answer must be the clear "no inference API" error, not a traceback.

Elasticsearch with x-pack (the default distribution under an enterprise or trial license) could
not be run here: creating the endpoint and a search through the retriever are not tested.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonpath_ng import parse as jsonpath

from sidecar.app import create_app
from sidecar.operations.engine_setup import elasticsearch as setup
from sidecar.scoring.minilm import MiniLMScorer
from tests.conftest import make_settings
from tests.integration.test_rerank_compat import model_order
from tests.live_server import serve_in_thread

# quotes, a backslash and accents: what the service's JSON escaping must carry
QUERY = 'waterproof "hiking" boots'
DOCUMENTS = [
    "merino wool hiking socks, cushioned",
    'waterproof leather hiking boots, 6" shaft',
    "4 person camping tent \\ waterproof fly",
    "trail running shoes, breathable mesh, légères",
    "stainless steel espresso machine, 15 bar",
]


@pytest.fixture(scope="module")
def sidecar_url(minilm: MiniLMScorer) -> Iterator[str]:
    # raw scores: the expected order and scores are the model's own
    raw = make_settings(scorer={"calibration": None})
    app = create_app(raw, wait_for_model=True, scorer=minilm)
    url, server, thread = serve_in_thread(app, start_timeout_s=60)
    yield url
    server.should_exit = True
    thread.join(timeout=30)


def filled(template: str, values: dict[str, str]) -> str:
    """The template with each `${name}` replaced by its JSON text; one left over is an error,
    as the service's ValidatingSubstitutor refuses it."""
    out = template
    for name, text in values.items():
        out = out.replace("${" + name + "}", text)
    left = re.search(r"\$\{.*?\}", out)
    assert left is None, f"the service would refuse the template: {left.group()} has no value"
    return out


def custom_service_request(
    endpoint: dict[str, Any], query: str, inputs: list[str]
) -> httpx.Request:
    """The HTTP request the custom service sends for a rerank of `inputs` against `query`."""
    settings = endpoint["service_settings"]
    body = filled(
        settings["request"],
        # Elasticsearch's JSON writer: strings quoted and escaped, UTF-8 as is
        {
            "query": json.dumps(query, ensure_ascii=False),
            "input": json.dumps(inputs, ensure_ascii=False),
        },
    )
    headers = {"Content-Type": "application/json", **settings["headers"]}
    return httpx.Request("POST", settings["url"], content=body.encode(), headers=headers)


def test_the_custom_services_request_is_answered_in_the_models_order(
    sidecar_url: str, minilm: MiniLMScorer
) -> None:
    endpoint = setup.endpoint_body(sidecar_url)
    request = custom_service_request(endpoint, QUERY, DOCUMENTS)
    with httpx.Client(timeout=60, trust_env=False) as http:
        answer = http.send(request)
    assert answer.status_code == 200, answer.text

    def no_constants(constant: str) -> Any:
        raise AssertionError(f"{constant} is not JSON")

    parsed = json.loads(answer.text, parse_constant=no_constants)
    paths = endpoint["service_settings"]["response"]["json_parser"]
    indices = [m.value for m in jsonpath(paths["reranked_index"]).find(parsed)]
    scores = [m.value for m in jsonpath(paths["relevance_score"]).find(parsed)]
    # the service casts each index to an Integer and each score to a float
    assert all(type(i) is int for i in indices) and all(type(s) is float for s in scores)
    assert sorted(indices) == list(range(len(DOCUMENTS)))  # every document once
    expected = model_order(minilm, QUERY, DOCUMENTS)
    assert indices == [i for i, _ in expected]
    assert scores == [pytest.approx(s, abs=1e-5) for _, s in expected]


def test_the_template_has_no_placeholder_a_retriever_leaves_unset() -> None:
    """A retriever sends a query and documents only (no top_n): the template must be fillable
    from those two, or the service would refuse every call."""
    template = setup.endpoint_body("http://s")["service_settings"]["request"]
    json.loads(filled(template, {"query": '"q"', "input": '["d"]'}))


@pytest.fixture(scope="module")
def es_url() -> str:
    url = os.environ.get("ES_URL")
    if not url:
        pytest.skip(
            "ES_URL is not set (scripts/test starts Elasticsearch and sets it; or: "
            "python -m es_integration.engines start elasticsearch)"
        )
    probe = httpx.get(f"{url}/_inference/rerank/{setup.DEFAULT_INFERENCE_ID}", trust_env=False)
    if "no handler found" not in probe.text:
        pytest.skip("this Elasticsearch has the inference API: its no-x-pack answer cannot be seen")
    return url


@pytest.mark.parametrize("remove", [False, True], ids=["set-up", "remove"])
def test_an_engine_without_x_pack_is_told_plainly(es_url: str, remove: bool) -> None:
    command = [sys.executable, "-m", "sidecar.cli", "engine-setup", "elasticsearch"]
    command += ["--url", es_url, "--sidecar-url", "http://127.0.0.1:9"]
    if remove:
        command.append("--remove")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    message = " ".join(done.stderr.split())
    for words in ("no inference API", "x-pack", "default distribution", "enterprise or trial"):
        assert words in message, message
