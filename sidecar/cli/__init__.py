"""The `rerank-sidecar` command. Each subcommand lives in its own module of this package and is a
thin layer over the parts: parse options, load settings, call one function, print."""

from __future__ import annotations

import click

from sidecar.cli.calibrate import calibrate_command
from sidecar.cli.engine_setup import engine_setup
from sidecar.cli.eval import eval_command
from sidecar.cli.index import index_command
from sidecar.cli.rules import rules
from sidecar.cli.serve import demo, serve
from sidecar.cli.vllm_args import vllm_args_command
from sidecar.cli.warm import warm_command


@click.group()
def main() -> None:
    """Multimodal reranking sidecar for Elasticsearch and OpenSearch."""


for _command in (
    serve,
    demo,
    eval_command,
    calibrate_command,
    engine_setup,
    index_command,
    rules,
    warm_command,
    vllm_args_command,
):
    main.add_command(_command)
