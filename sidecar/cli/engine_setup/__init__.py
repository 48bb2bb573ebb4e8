"""`rerank-sidecar engine-setup`: make the sidecar the engine's own reranker, so a search that
goes to the engine directly comes back reranked by this sidecar. One subcommand per engine; each
is idempotent and has `--remove`."""

from __future__ import annotations

import click

from sidecar.cli.engine_setup.elasticsearch import elasticsearch_command
from sidecar.cli.engine_setup.opensearch import opensearch_command


@click.group("engine-setup")
def engine_setup() -> None:
    """Set up (or --remove) the engine-side objects that call this sidecar as a reranker."""


# each engine's subcommand registers itself here: engine_setup.add_command(<command>)

engine_setup.add_command(elasticsearch_command)
engine_setup.add_command(opensearch_command)
