"""What the commands share: the --config option, settings that fail as a clean CLI error, and
(from wiring) the parts built, loaded and closed around a piece of work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sidecar.config import Settings, load_settings
from sidecar.errors import ConfigError
from sidecar.wiring import loaded_services

__all__ = ["config_option", "loaded_services", "settings_from"]


def config_option(help_text: str) -> Any:
    return click.option(
        "--config",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help=help_text,
    )


def settings_from(config: Path | None) -> Settings:
    """The settings of `config`, or a ClickException naming what is wrong with them."""
    try:
        return load_settings(config)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from exc
