"""The vLLM launch recipe (`rerank-sidecar vllm-args`) and the Lychee score template, without
vLLM: the template is rendered the way vLLM renders a score template (a Jinja sandbox with
trim_blocks and lstrip_blocks, two messages of roles `query` and `document` whose content has
each image's placeholder in front of its text) and must give prompt.render's string."""

from __future__ import annotations

import json
import shlex

import pytest
from click.testing import CliRunner
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sidecar.cli import main
from sidecar.scoring import prompt, vllm_recipe

INSTRUCTION = "Given an e-commerce search query, rank product titles by their relevance."


def _raise(message: str) -> None:
    raise ValueError(message)


def _render(query: str, document: str, **kwargs: object) -> str:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    template = env.from_string(vllm_recipe.template_path().read_text(encoding="utf-8"))
    messages = [{"role": "query", "content": query}, {"role": "document", "content": document}]
    return template.render(messages=messages, **kwargs)


def test_template_declares_the_prompt_version_the_scorer_renders() -> None:
    assert vllm_recipe.template_version(vllm_recipe.template_path()) == prompt.PROMPT_VERSION


@pytest.mark.parametrize("query_image", [False, True])
@pytest.mark.parametrize("doc_image", [False, True])
@pytest.mark.parametrize(("query", "doc"), [("red shoes", "Mesh | cushioned"), ("", "只有文字")])
def test_template_rebuilds_lychees_prompt(
    query_image: bool, doc_image: bool, query: str, doc: str
) -> None:
    side_q = (prompt.IMAGE_PLACEHOLDER if query_image else "") + query
    side_d = (prompt.IMAGE_PLACEHOLDER if doc_image else "") + doc
    rendered = _render(side_q, side_d, instruction=INSTRUCTION)
    assert rendered == prompt.render(INSTRUCTION, query, query_image, doc, doc_image)


def test_template_refuses_a_request_without_instruction() -> None:
    with pytest.raises(ValueError, match="instruction"):
        _render("q", "d")


def test_lychee_recipe_args() -> None:
    found = vllm_recipe.recipe("lychee", min_pixels=3136, max_pixels=50176)
    args = list(found.args)

    def value(flag: str) -> str:
        return args[args.index(flag) + 1]

    assert value("--runner") == "pooling"
    assert value("--convert") == "classify"
    overrides = json.loads(value("--hf-overrides"))
    assert overrides["classifier_from_token"] == ["no", "yes"]
    assert overrides["method"] == "from_2_way_softmax"
    assert overrides["text_config"] == {"tie_word_embeddings": False}
    assert value("--chat-template") == str(vllm_recipe.template_path())
    assert vllm_recipe.template_path().is_file()
    assert json.loads(value("--mm-processor-kwargs")) == {"min_pixels": 3136, "max_pixels": 50176}
    assert int(value("--block-size")) <= 64  # the shared prefix (~107 tokens) fills a block
    assert "--dtype" not in args


def test_cli_prints_the_recipe_shell_quoted_on_one_line() -> None:
    result = CliRunner().invoke(
        main, ["vllm-args", "--family", "lychee", "--model", "/m", "--dtype", "float32"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 1
    expected = vllm_recipe.recipe("lychee", dtype="float32").args
    assert tuple(shlex.split(result.output)) == expected
    full = CliRunner().invoke(
        main, ["vllm-args", "--family", "cross-encoder", "--model", "/my models/x", "--full"]
    )
    assert shlex.split(full.output) == [
        "python",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        "/my models/x",
        "--runner",
        "pooling",
    ]


def test_template_path_names_where_vllm_reads_the_template() -> None:
    result = CliRunner().invoke(
        main,
        ["vllm-args", "--family", "lychee", "--model", "/m", "--template-path", "/etc/t.jinja"],
    )
    args = shlex.split(result.output)
    assert args[args.index("--chat-template") + 1] == "/etc/t.jinja"


@pytest.mark.parametrize("family", ["qwen3-reranker", "jina-reranker-m0"])
def test_families_without_a_tested_recipe_are_refused_saying_why(family: str) -> None:
    result = CliRunner().invoke(main, ["vllm-args", "--family", family, "--model", "/m"])
    assert result.exit_code != 0
    assert family in result.output and "template" in result.output


def test_unknown_family_names_the_known_ones() -> None:
    result = CliRunner().invoke(main, ["vllm-args", "--family", "bm25", "--model", "/m"])
    assert result.exit_code != 0
    assert "lychee" in result.output and "cross-encoder" in result.output
