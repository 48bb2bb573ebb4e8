"""The configuration reference in the README is a file the sidecar accepts."""

from __future__ import annotations

import re
from pathlib import Path

from sidecar.config import load_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_configuration_example_validates(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Configuration") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    config = tmp_path / "settings.yaml"
    config.write_text(block.group(1), encoding="utf-8")
    settings = load_settings(config)
    assert settings.engine.kind == "embedded" and settings.scorer.micro_batching is True
    assert settings.limits.default_window == 100 and settings.admin_token is None
