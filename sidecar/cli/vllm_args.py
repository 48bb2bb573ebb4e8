"""`rerank-sidecar vllm-args`: the arguments vLLM needs to serve a reranker family."""

from __future__ import annotations

import shlex

import click

from sidecar.scoring import vllm_recipe


@click.command("vllm-args")
@click.option(
    "--family",
    required=True,
    help=f"the reranker family: {', '.join(vllm_recipe.FAMILIES)}",
)
@click.option(
    "--model",
    "model",
    required=True,
    help="the checkpoint folder (or hub id) given to vLLM's --model",
)
@click.option(
    "--min-pixels",
    type=int,
    default=vllm_recipe.DEFAULT_MIN_PIXELS,
    show_default=True,
    help="lychee: scorer.min_pixels (the same resolution gives the same scores)",
)
@click.option(
    "--max-pixels",
    type=int,
    default=vllm_recipe.DEFAULT_MAX_PIXELS,
    show_default=True,
    help="lychee: scorer.max_pixels",
)
@click.option(
    "--dtype",
    type=click.Choice(["auto", "float32", "bfloat16", "float16"]),
    default=None,
    help="vLLM's --dtype (default: vLLM's own choice; its CPU build picks float16; the "
    "in-process scorers run float32 on a CPU, bfloat16 on a GPU)",
)
@click.option(
    "--template-path",
    default=None,
    help="lychee: the score template's path as vLLM sees it, when vLLM runs in another "
    "container (mount the file the default output names, e.g. from a ConfigMap)",
)
@click.option(
    "--full",
    is_flag=True,
    help="print the whole command line (python -m vllm.entrypoints.openai.api_server --model "
    "PATH ...), not only the arguments to add",
)
def vllm_args_command(
    family: str,
    model: str,
    min_pixels: int,
    max_pixels: int,
    dtype: str | None,
    template_path: str | None,
    full: bool,
) -> None:
    """Print, shell-quoted on one line, the arguments to add to `python -m
    vllm.entrypoints.openai.api_server --model MODEL` so that vLLM serves FAMILY the way the
    sidecar's `scorer.kind: vllm` scores it (runner, conversion, the project's score template,
    the KV-cache block size that lets the shared prefix be cached)."""
    try:
        found = vllm_recipe.recipe(
            family,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
            dtype=dtype,
            template_at=template_path,
        )
    except vllm_recipe.RecipeError as exc:
        raise click.ClickException(str(exc)) from exc
    if full:
        head = ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", model]
        click.echo(f"{shlex.join(head)} {found.shell()}")
    else:
        click.echo(found.shell())
