"""Commands that fill the shared store fail when it cannot be written: `index --embed` and
`warm` (in process) against a Redis port nothing listens on exit 1 naming the store and the
reason, before any work; `index --embed` with settings that cannot share refuses before the
load. A real closed port, not a fake client."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from sidecar.cache.connect import redacted
from sidecar.cli.index import index_command
from sidecar.cli.warm import warm_command
from tests.redis_server import free_port


@pytest.fixture(autouse=True)
def _no_rerank_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RERANK_"):
            monkeypatch.delenv(name)


def _config(tmp_path: Path, cache: str) -> Path:
    path = tmp_path / "sidecar.yaml"
    path.write_text(f"cache: {cache}\nrules: {{watch: false}}\n", encoding="utf-8")
    return path


def _index_embed(config: Path) -> tuple[int, str]:
    # an engine URL nothing answers either: the command must stop before it loads anything
    engine = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(
        index_command,
        ["--config", str(config), "--engine", "elasticsearch", "--url", engine, "--embed"],
        catch_exceptions=False,
    )
    assert "indexed" not in result.output and "Traceback" not in result.output
    return result.exit_code, result.output


def test_index_embed_fails_naming_an_unreachable_store(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    code, output = _index_embed(_config(tmp_path, f"{{kind: redis, redis_url: '{url}'}}"))
    assert code == 1
    assert f"Error: {url}: cannot write shared embeddings: redis: ConnectionError" in output
    assert "encoded" not in output


def test_the_store_is_named_without_its_password(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://sidecar:s3cret-pw@127.0.0.1:{port}/2"
    code, output = _index_embed(_config(tmp_path, f"{{kind: redis, redis_url: '{url}'}}"))
    assert code == 1
    assert f"redis://sidecar:***@127.0.0.1:{port}/2: cannot write shared embeddings" in output
    assert "s3cret" not in output


@pytest.mark.parametrize(
    ("cache", "scorer", "words"),
    [
        ("{kind: memory}", "", "cache.kind is 'memory': nothing would keep them"),
        ("{kind: none}", "", "cache.kind is 'none': nothing would keep them"),
        ("{kind: redis, share_embeddings: false}", "", "cache.share_embeddings is false"),
        ("{kind: redis}", "scorer: {kind: remote}\n", "scorer.kind is 'remote'"),
    ],
)
def test_index_embed_refuses_settings_that_cannot_share_before_the_load(
    tmp_path: Path, cache: str, scorer: str, words: str
) -> None:
    config = _config(tmp_path, cache)
    config.write_text(config.read_text(encoding="utf-8") + scorer, encoding="utf-8")
    code, output = _index_embed(config)
    assert code == 1
    assert words in output


def test_warm_in_process_fails_naming_an_unreachable_store(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    queries = tmp_path / "queries.txt"
    queries.write_text("hiking boots\nyoga mat\n", encoding="utf-8")
    config = _config(tmp_path, f"{{kind: redis, redis_url: '{url}'}}")
    result = CliRunner().invoke(
        warm_command, ["--queries", str(queries), "--config", str(config)], catch_exceptions=False
    )
    assert result.exit_code == 1
    assert f"Error: {url}: cannot write the score cache: redis: ConnectionError" in result.output
    assert "warmed" not in result.output  # no query ran


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("rediss://:pw@cache:6380/1", "rediss://:***@cache:6380/1"),
        ("redis://user@cache/0", "redis://user@cache/0"),
        ("redis+cluster://u:p@h1:7000,h2:7001", "redis+cluster://u:***@h1:7000,h2:7001"),
        ("redis+sentinel://u:p@s1:26379/mymaster/0", "redis+sentinel://u:***@s1:26379/mymaster/0"),
    ],
)
def test_redacted_cache_urls(url: str, shown: str) -> None:
    assert redacted(url) == shown
