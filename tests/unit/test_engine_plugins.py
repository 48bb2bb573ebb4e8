"""es_integration.engines.plugins without a JVM: the ML set and its order, what a home holds,
the node settings that follow, a refused download (a real refused connection) leaving the
node without the set and saying why, and a kept install copied into a fresh home. Installing
with the real plugin tool and starting the node are what scripts/test does (`--plugins ml`)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from es_integration.engines import EngineError, maven, plugins

ML = ["opensearch-job-scheduler", "opensearch-ml", "opensearch-knn", "opensearch-neural-search"]


def fake_install(folder: Path, name: str) -> None:
    folder.mkdir(parents=True)
    (folder / "plugin-descriptor.properties").write_text(
        f"description=x\nversion=3.6.0.0\nname={name}\nopensearch.version=3.6.0\n"
    )
    (folder / f"{name}.jar").write_bytes(b"PK")


def closed_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/maven2"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("RERANK_ENGINE_CACHE", str(folder))
    return folder


def test_the_ml_set_comes_in_install_order() -> None:
    assert plugins.set_names(["ml"]) == ML
    assert plugins.set_names(["ml", "ml"]) == ML
    with pytest.raises(EngineError, match="unknown plugin set nope; choose from ml"):
        plugins.set_names(["nope"])
    assert plugins.plugin_version("3.6.0") == "3.6.0.0"


def test_a_homes_plugins_and_their_node_settings(tmp_path: Path) -> None:
    home = tmp_path / "opensearch-3.6.0"
    (home / "plugins").mkdir(parents=True)
    assert plugins.installed(home) == []
    assert plugins.node_settings(home) == {}  # the node refuses ML settings without ML
    fake_install(home / "plugins" / "opensearch-knn", "opensearch-knn")
    assert plugins.node_settings(home) == {}
    fake_install(home / "plugins" / "opensearch-ml", "opensearch-ml")
    assert plugins.installed(home) == ["opensearch-knn", "opensearch-ml"]
    assert plugins.node_settings(home)["plugins.ml_commons.native_memory_threshold"] == 100


def test_a_refused_download_leaves_the_node_without_the_set_and_says_why(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maven, "MAVEN_URL", closed_url())
    home = tmp_path / "opensearch-3.6.0"
    (home / "plugins").mkdir(parents=True)
    outcome = plugins.ensure(["ml"], "3.6.0", home, {}, None)
    assert outcome.installed == [] and plugins.installed(home) == []
    assert list(outcome.missing) == ML
    assert all("Connection refused" in why for why in outcome.missing.values())
    assert "opensearch-ml-plugin-3.6.0.0.zip" in outcome.missing["opensearch-ml"]
    assert not list(cache.glob("**/*.zip"))  # nothing half-downloaded is kept


def test_a_kept_install_is_copied_into_a_fresh_home_without_a_download(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maven, "MAVEN_URL", closed_url())  # a download would be refused
    for name in ML:
        fake_install(cache / "installed" / f"{name}-3.6.0.0", name)
    home = tmp_path / "opensearch-3.6.0"
    (home / "plugins").mkdir(parents=True)
    outcome = plugins.ensure(["ml"], "3.6.0", home, {}, None)
    assert outcome.missing == {} and sorted(outcome.installed) == sorted(ML)
    assert (home / "plugins" / "opensearch-ml" / "opensearch-ml.jar").read_bytes() == b"PK"
    # installed ones are not installed again (a restart in the same state dir)
    assert plugins.ensure(["ml"], "3.6.0", home, {}, None).install_s == 0.0


def test_a_partly_kept_set_is_not_copied(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(maven, "MAVEN_URL", closed_url())
    fake_install(cache / "installed" / "opensearch-ml-3.6.0.0", "opensearch-ml")
    home = tmp_path / "opensearch-3.6.0"
    (home / "plugins").mkdir(parents=True)
    outcome = plugins.ensure(["ml"], "3.6.0", home, {}, None)
    assert plugins.installed(home) == [] and list(outcome.missing) == ML
