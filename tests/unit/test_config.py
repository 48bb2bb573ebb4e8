"""load_settings: pydantic-settings' own sources, highest first: keyword arguments, the
environment (whatever its value), the YAML file, the defaults; errors name the file and the
dotted path of each wrong key."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sidecar.app import create_app
from sidecar.config import Settings, load_settings
from sidecar.errors import ConfigError

SIDECAR = Path(__file__).resolve().parents[2] / "sidecar"


@pytest.fixture(autouse=True)
def _no_rerank_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("RERANK_"):
            monkeypatch.delenv(name)


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sidecar.yaml"
    path.write_text(text, encoding="utf-8")
    return path


REDIS_FILE = """\
port: 9000
cache:
  kind: redis
  redis_url: redis://127.0.0.1:1/0
  prefix: "file:"
rules: {watch: false}
"""


def test_a_variable_equal_to_the_default_still_wins_over_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RERANK_CACHE__KIND", "memory")  # the default kind
    monkeypatch.setenv("RERANK_PORT", "8080")  # the default port
    settings = load_settings(_file(tmp_path, REDIS_FILE))
    assert settings.cache.kind == "memory"
    assert settings.port == 8080
    # the variable set one key of the file's cache mapping: the others stay the file's
    assert settings.cache.redis_url == "redis://127.0.0.1:1/0"
    assert settings.cache.prefix == "file:"


def test_without_variables_the_file_wins_over_the_defaults(tmp_path: Path) -> None:
    settings = load_settings(_file(tmp_path, REDIS_FILE))
    assert (settings.cache.kind, settings.port, settings.cache.ttl_s) == ("redis", 9000, 604800)


def test_keyword_arguments_win_over_the_environment_and_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RERANK_CACHE__KIND", "memory")
    monkeypatch.setenv("RERANK_CACHE__TTL_S", "60")
    settings = load_settings(_file(tmp_path, REDIS_FILE), cache={"kind": "none"})
    assert settings.cache.kind == "none"
    assert settings.cache.ttl_s == 60  # the variable, merged under the keyword's mapping
    assert settings.cache.redis_url == "redis://127.0.0.1:1/0"  # the file, under both


def test_lists_in_variables_are_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RERANK_ENGINE__ALLOWED_INDICES", '["products", "logs-*"]')
    path = _file(tmp_path, "engine: {allowed_indices: [other]}\n")
    assert load_settings(path).engine.allowed_indices == ["products", "logs-*"]


def test_a_variable_that_does_not_parse_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RERANK_ENGINE__URLS", "not json")
    with pytest.raises(ConfigError, match=r"invalid configuration: .*engine"):
        load_settings()


def test_a_wrong_variable_value_names_its_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RERANK_CACHE__KIND", "memcached")
    with pytest.raises(ConfigError, match=r"^invalid configuration: cache\.kind: Input should be"):
        load_settings()


def test_wrong_keys_are_named_with_the_file_and_their_dotted_path(tmp_path: Path) -> None:
    path = _file(tmp_path, "cache: {kind: bogus, colour: red}\nlimits: {max_size: 0}\nfoo: 1\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(path)
    message = refused.value.message
    assert message.startswith(f"{path}: invalid configuration: ")
    assert "cache.kind: Input should be 'memory', 'redis' or 'none'" in message
    assert "cache.colour: Extra inputs are not permitted" in message
    assert "limits.max_size: Input should be greater than or equal to 1" in message
    assert "foo: Extra inputs are not permitted" in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("- a\n- b\n", "configuration must be a mapping at the top level"),
        ("cache: [\n", "cannot read configuration: "),
        ("port: 1\nport: 2\n", "cannot read configuration: .*duplicate key"),
    ],
)
def test_a_file_that_is_not_a_configuration_is_refused(
    tmp_path: Path, text: str, words: str
) -> None:
    path = _file(tmp_path, text)
    with pytest.raises(ConfigError, match="(?s)" + re.escape(str(path)) + ": " + words):
        load_settings(path)


def test_a_missing_file_is_refused_not_skipped(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"absent\.yaml: cannot read configuration: .*No such"):
        load_settings(tmp_path / "absent.yaml")


def test_an_empty_file_is_the_defaults(tmp_path: Path) -> None:
    assert load_settings(_file(tmp_path, "")).model_dump() == Settings().model_dump()


def test_yaml_1_2_words_stay_strings(tmp_path: Path) -> None:
    """The file is read as YAML 1.2 (as rules files are): `no` and `on` are not booleans."""
    settings = load_settings(_file(tmp_path, "cache: {prefix: no}\nengine: {default_index: on}\n"))
    assert (settings.cache.prefix, settings.engine.default_index) == ("no", "on")


def test_a_bare_settings_object_reads_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file belongs to one load_settings call only, not to Settings() built afterwards."""
    load_settings(_file(tmp_path, REDIS_FILE))
    assert Settings().cache.kind == "memory"
    monkeypatch.setenv("RERANK_CACHE__KIND", "none")
    assert Settings().cache.kind == "none"


def test_no_module_holds_a_settings_object() -> None:
    """Settings are built by whoever starts the sidecar (create_app takes them), never at
    import time."""
    made_at_import = re.compile(
        r"^\w+(\s*:\s*[\w\[\]. |]+)?\s*=\s*(load_settings|Settings)\(", re.M
    )
    offenders = [
        str(path.relative_to(SIDECAR.parent))
        for path in SIDECAR.rglob("*.py")
        if made_at_import.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_the_environment_wins_in_a_running_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, minilm: Any
) -> None:
    """The issue's case end to end: a file saying `cache.kind: redis` (a Redis nobody runs)
    and RERANK_CACHE__KIND=memory: the sidecar serves with the memory cache."""
    monkeypatch.setenv("RERANK_CACHE__KIND", "memory")
    settings = load_settings(_file(tmp_path, REDIS_FILE))
    with TestClient(create_app(settings, wait_for_model=True, scorer=minilm)) as client:
        body = client.get("/readyz").json()
        assert body["cache"] == {"ready": True, "kind": "memory"}
        assert client.get("/admin/cache/stats").status_code == 404  # no admin token: routes off
