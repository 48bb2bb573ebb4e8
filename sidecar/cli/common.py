"""What the commands share: the --config option, the --url and --index options of the commands
that talk to an engine (index, engine-setup), settings that fail as a clean CLI error, and (from
wiring) the parts built, loaded and closed around a piece of work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from sidecar.config import Settings, load_settings
from sidecar.errors import ConfigError
from sidecar.wiring import loaded_services

__all__ = [
    "config_option",
    "engine_index_option",
    "engine_url_option",
    "loaded_services",
    "settings_from",
]


def config_option(help_text: str) -> Any:
    return click.option(
        "--config",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help=help_text,
    )


def engine_url_option(engine: str) -> Any:
    """--url: the engine to talk to instead of the first of engine.urls (None when not given).
    `engine` names it in the help: "engine", "Elasticsearch", "OpenSearch"."""
    return click.option(
        "--url", default=None, help=f"{engine} URL (default: the first of engine.urls)"
    )


def engine_index_option(help_text: str, name: str = "index") -> Any:
    """--index: the engine index to use instead of engine.default_index (None when not given),
    passed to the command as `name`."""
    return click.option("--index", name, default=None, help=help_text)


def settings_from(config: Path | None) -> Settings:
    """The settings of `config`, or a ClickException naming what is wrong with them."""
    try:
        return load_settings(config)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from exc
