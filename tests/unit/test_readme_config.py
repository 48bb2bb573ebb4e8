"""The configuration reference (docs/configuration.md) is a file the sidecar accepts."""

from __future__ import annotations

import re
from pathlib import Path

from sidecar.config import load_settings

CONFIG_PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_readme_configuration_example_validates(tmp_path: Path) -> None:
    text = CONFIG_PAGE.read_text(encoding="utf-8")
    section = text[text.index("# Configuration") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    config = tmp_path / "settings.yaml"
    config.write_text(block.group(1), encoding="utf-8")
    settings = load_settings(config)
    assert settings.engine.kind == "embedded" and settings.scorer.micro_batching is True
    assert settings.limits.default_window == 100 and settings.admin_token is None
