"""The configuration reference (docs/configuration.md) is generated from the settings models:
the committed page is what `python -m sidecar.config_reference` writes, its YAML is a file the
sidecar accepts, and every setting is in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from sidecar import config_reference
from sidecar.config import Settings, load_settings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


@pytest.fixture(autouse=True)
def _no_rerank_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The defaults, not whatever the test run's environment sets."""
    import os

    for name in list(os.environ):
        if name.startswith("RERANK_"):
            monkeypatch.delenv(name)


def _yaml_block() -> str:
    block = re.search(r"```yaml\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert block is not None
    return block.group(1)


def test_the_committed_page_is_the_generated_one() -> None:
    assert PAGE.read_text(encoding="utf-8") == config_reference.render(), (
        "docs/configuration.md differs from sidecar/config.py: run "
        "`python -m sidecar.config_reference` and commit the page"
    )


def test_the_check_command_sees_a_stale_page(tmp_path: Path) -> None:
    page = tmp_path / "configuration.md"
    assert config_reference.main([str(page)]) == 0
    assert config_reference.main([str(page), "--check"]) == 0
    page.write_text(page.read_text(encoding="utf-8").replace("cache.kind", "cache.knd", 1))
    assert config_reference.main([str(page), "--check"]) == 1


def test_configuration_example_validates(tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text(_yaml_block(), encoding="utf-8")
    settings = load_settings(config)
    assert settings.engine.kind == "embedded" and settings.scorer.micro_batching is True
    assert settings.limits.default_window == 100 and settings.admin_token is None


def test_the_example_is_every_default(tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text(_yaml_block(), encoding="utf-8")
    assert load_settings(config).model_dump() == Settings().model_dump()
    loaded = YAML(typ="safe").load(_yaml_block())
    written = set()
    for name, value in loaded.items():
        if isinstance(value, dict):  # a section: each of its keys is a setting
            written |= {(name, key) for key in value}
        else:
            written.add((name,))
    assert written == set(config_reference.settings_paths())


def test_every_setting_has_a_row_with_its_variable_and_description() -> None:
    text = PAGE.read_text(encoding="utf-8")
    paths = list(config_reference.settings_paths())
    assert len(paths) > 50  # every section is walked, not only the top level
    for path in paths:
        dotted = ".".join(path)
        row = re.search(rf"^\| `{re.escape(dotted)}` \|.*$", text, re.M)
        assert row is not None, f"{dotted} is missing from docs/configuration.md"
        cells = [c.strip() for c in row.group(0).strip("|").split(" | ")]
        assert cells[3] == f"`{config_reference.env_name(path)}`"
        assert len(cells[4]) > 10, f"{dotted} has no description"
    # the ones the README once cited without listing, or never cited
    for dotted in (
        "limits.max_timeout_ms",
        "limits.max_result_window",
        "scorer.strict_languages",
        "rules.watch_interval_s",
    ):
        assert f"| `{dotted}` |" in text


def test_a_setting_without_a_description_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from sidecar.config import RulesSettings

    field = RulesSettings.model_fields["watch"]
    monkeypatch.setattr(field, "description", None)
    with pytest.raises(ValueError, match=r"rules\.watch has no description"):
        config_reference.render()


def test_a_variable_is_named_as_pydantic_settings_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page's variable names are the ones the environment source really reads."""
    for path in (("limits", "max_timeout_ms"), ("scorer", "strict_languages"), ("port",)):
        value = {"max_timeout_ms": "12345", "strict_languages": "true", "port": "9001"}[path[-1]]
        monkeypatch.setenv(config_reference.env_name(path), value)
    settings = load_settings()
    assert settings.limits.max_timeout_ms == 12345
    assert settings.scorer.strict_languages is True
    assert settings.port == 9001
