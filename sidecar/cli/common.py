"""What the commands share: the --config option, settings that fail as a clean CLI error, and
the parts built, loaded and closed around a piece of work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import click

from sidecar.config import Settings, load_settings
from sidecar.errors import ConfigError
from sidecar.services import Services
from sidecar.wiring import build_services, close_services


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


@asynccontextmanager
async def loaded_services(settings: Settings) -> AsyncIterator[Services]:
    """The parts with the model loaded (ConfigError when it cannot load), closed afterwards."""
    services = build_services(settings)
    try:
        await services.scorer.load()
        if not services.scorer.state.ready:
            raise ConfigError(f"model did not load: {services.scorer.state.reason}")
        yield services
    finally:
        await close_services(services)
