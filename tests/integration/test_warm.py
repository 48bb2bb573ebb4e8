"""`rerank-sidecar warm` against a running sidecar (uvicorn, embedded engine, real Redis):
afterwards the same queries are served from the cache alone."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import uvicorn
from click.testing import CliRunner

from sidecar.app import create_app
from sidecar.cli.warm import warm_command
from sidecar.errors import ConfigError
from sidecar.operations.warmup import read_query_log, top_queries
from tests.conftest import make_settings
from tests.redis_server import free_port

TOP = ["hiking boots", "espresso machine", "yoga mat", "dog bed", "wireless earbuds"]


def pairs(output: str) -> tuple[int, int]:
    found = re.search(r"(\d+) pairs scored, (\d+) already cached", output)
    assert found, output
    return int(found[1]), int(found[2])


@pytest.fixture
def sidecar_url(minilm, redis_url) -> Iterator[str]:
    redis.Redis.from_url(redis_url).flushdb()
    port = free_port()
    settings = make_settings(
        port=port, cache={"kind": "redis", "redis_url": redis_url, "prefix": "warm:"}
    )
    app = create_app(settings, wait_for_model=True, scorer=minilm)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "sidecar did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def test_query_logs_plain_and_csv(tmp_path: Path) -> None:
    plain = tmp_path / "q.txt"
    plain.write_text("tent\n yoga mat\n\ntent\nkettle\ntent\nkettle\n")
    assert read_query_log(plain) == [("tent", 3), ("kettle", 2), ("yoga mat", 1)]
    csv = tmp_path / "q.csv"
    csv.write_text('Query,Count\nyoga mat,5\ntent,50\n"mug, large",7\nyoga mat,1\n')
    assert top_queries(csv, 2) == ["tent", "mug, large"]
    assert read_query_log(csv)[2] == ("yoga mat", 6)
    bad = tmp_path / "bad.csv"
    bad.write_text("query,count\ntent,many\n")
    with pytest.raises(ConfigError, match=r"bad.csv:2: count 'many' is not a number"):
        read_query_log(bad)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("q,count\ntent,1\n")
    with pytest.raises(ConfigError, match="needs a 'query' column"):
        read_query_log(nocol)


@pytest.mark.redis
def test_warm_over_http_then_queries_are_served_from_cache(sidecar_url, tmp_path) -> None:
    log = tmp_path / "queries.csv"
    log.write_text(
        "query,count\n"
        "hiking boots,90\nespresso machine,80\nyoga mat,70\ndog bed,60\n"
        "wireless earbuds,50\ncamping stove,1\n"
    )
    state = tmp_path / "warm.state"
    runner = CliRunner()
    args = ["--queries", str(log), "--top-k", "5", "--url", sidecar_url, "--state", str(state)]
    args += ["--concurrency", "3", "--window", "40", "--rate", "50"]
    first = runner.invoke(warm_command, args)
    assert first.exit_code == 0, first.output
    assert "warmed 5/5 queries (0 skipped as done)" in first.output
    scored, cached = pairs(first.output)
    assert cached == 0 and "0 errors" in first.output
    assert len(state.read_text().splitlines()) == 5

    windows = {}
    with httpx.Client(base_url=sidecar_url) as http:
        for query in TOP:
            body = http.post("/search", json={"query": query, "window": 40}).json()
            assert body["cache"] == {"status": "ok", "hits": body["window"], "misses": 0}, query
            windows[query] = body["window"]
        cold = http.post("/search", json={"query": "camping stove", "window": 40}).json()
        assert cold["cache"]["misses"] > 0  # below the top K: not warmed
    assert scored == sum(windows.values()) and scored > 150

    resumed = runner.invoke(warm_command, args)  # everything is in the state file
    assert resumed.exit_code == 0 and "warmed 0/0 queries (5 skipped as done)" in resumed.output

    state.write_text(state.read_text().splitlines()[0] + "\n")  # as if stopped after one
    again = runner.invoke(warm_command, args)
    assert "warmed 4/4 queries (1 skipped as done)" in again.output
    assert pairs(again.output) == (0, scored - windows["hiking boots"])


def test_warm_reports_errors_and_does_not_mark_them_done(tmp_path) -> None:
    log = tmp_path / "q.txt"
    log.write_text("tent\n")
    state = tmp_path / "s"
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = CliRunner().invoke(
        warm_command, ["--queries", str(log), "--url", url, "--state", str(state)]
    )
    assert result.exit_code == 1
    assert "failed: tent: ConnectError" in result.output
    assert "warmed 0/1 queries" in result.output and "1 errors" in result.output
    assert not state.exists() or state.read_text() == ""


@pytest.mark.redis
def test_warm_in_process_fills_redis(redis_url, tmp_path) -> None:
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter("inproc:*"):
        client.delete(key)
    config = tmp_path / "c.yaml"
    config.write_text(
        f"cache: {{kind: redis, redis_url: '{redis_url}', prefix: 'inproc:'}}\n"
        "rules: {watch: false}\n"
    )
    log = tmp_path / "q.txt"
    log.write_text("dog bed\ndog bed\nyoga mat\n")
    args = ["--queries", str(log), "--config", str(config), "--window", "20", "--top-k", "1"]
    result = CliRunner().invoke(warm_command, args)
    assert result.exit_code == 0, result.output
    assert "warmed 1/1 queries" in result.stdout
    scored, cached = pairs(result.stdout)
    # the pair scores; the products' shared embeddings live beside them under inproc:emb:
    pair_keys = [k for k in client.scan_iter("inproc:*") if not k.startswith(b"inproc:emb:")]
    assert scored == len(pair_keys) > 0 and cached == 0
    assert len(list(client.scan_iter("inproc:emb:*"))) >= scored  # one per product scored
    again = CliRunner().invoke(warm_command, args)
    assert pairs(again.stdout) == (0, scored)
