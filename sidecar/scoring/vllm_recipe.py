"""How vLLM serves each reranker family the sidecar scores through (`scorer.kind: vllm`).

`vllm_args(family, model)` is the list of arguments to add to `python -m
vllm.entrypoints.openai.api_server --model PATH` (`rerank-sidecar vllm-args` prints it), so an
operator never writes them by hand:

- `lychee` (Lychee-rerank-mm, a Qwen2.5-VL yes/no judge): vLLM's pooling runner turns the
  generative model into a classifier (`--convert classify`) whose one logit is the difference of
  the `yes` and `no` rows of the LM head (`method: from_2_way_softmax`), so `/v1/score` answers
  sigmoid(yes - no) = softmax([no, yes])[yes], the in-process scorer's P(yes). The checkpoint's
  LM head is its own matrix: `text_config.tie_word_embeddings: false`, because transformers 5
  reads the text config's default (tied) where Lychee's config says so only at the top level. The
  prompt is the project's score template (templates/lychee_score.jinja), versioned with
  `prompt.PROMPT_VERSION`. Images arrive as `data:` URLs the sidecar made from bytes it fetched:
  `--allowed-media-domains invalid` (a reserved name, RFC 2606) leaves vLLM no host to fetch from.
  The image resolution is the in-process scorer's (`--mm-processor-kwargs`), and the KV cache
  block is 32 tokens: prefix caching shares whole blocks only, and the CPU build's default of 128
  is larger than the ~107-token prefix (system turn, instruction, query) every document of a
  window shares.
- `cross-encoder` (a BERT-style sequence-classification folder): the pooling runner; vLLM
  tokenizes (query, document) as a text pair and answers the one label's sigmoid, as the
  in-process `cross-encoder` scorer does.

Qwen3-Reranker and jina-reranker-m0 are refused until the project ships and tests their
templates (see `UNSUPPORTED`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sidecar.scoring import prompt

LYCHEE_TEMPLATE = "lychee_score.jinja"
BLOCK_SIZE = 32  # tokens per KV-cache block: the unit prefix caching shares (see above)
DEFAULT_MIN_PIXELS = 4 * 28 * 28  # the lychee scorer's defaults (sidecar.config ScorerSettings)
DEFAULT_MAX_PIXELS = 1280 * 28 * 28

FAMILIES = ("lychee", "cross-encoder")
UNSUPPORTED = {
    "qwen3-reranker": "Qwen3-Reranker needs a score template of its own (vLLM's lives in its "
    "source tree, not in the wheel) that this project does not ship or test yet; serve it "
    "with vLLM's documented recipe and `scorer.family: qwen3-reranker` once the sidecar "
    "supports it",
    "jina-reranker-m0": "jina-reranker-m0 (JinaVLForRanking) has no tested recipe in this "
    "project yet: its prompt format and image handling are not covered by a template here",
}


class RecipeError(ValueError):
    """A family this project cannot give a recipe for; the message says why and what it knows."""


@dataclass(frozen=True)
class Recipe:
    family: str
    args: tuple[str, ...]
    template: Path | None  # the score template file, when the family has one

    def shell(self) -> str:
        """The arguments shell-quoted on one line."""
        return shlex.join(self.args)


def template_path(name: str = LYCHEE_TEMPLATE) -> Path:
    """The installed path of a template file shipped in sidecar/scoring/templates."""
    return Path(str(resources.files("sidecar.scoring").joinpath("templates", name)))


def template_version(path: Path) -> str | None:
    """The `prompt_version:` the template's opening comment declares."""
    found = re.search(r"prompt_version:\s*(\S+)", path.read_text(encoding="utf-8"))
    return found.group(1) if found else None


def template_sha256(path: Path) -> str:
    """The template's content hash (part of a vLLM scorer's score identity)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recipe(
    family: str,
    *,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    block_size: int = BLOCK_SIZE,
    dtype: str | None = None,
    template_at: str | None = None,
) -> Recipe:
    """The arguments vLLM needs for `family` (RecipeError for one without a recipe). `dtype`:
    vLLM's `--dtype` when given (its CPU build picks float16 for a float32 checkpoint; the
    in-process scorers run float32 on a CPU and bfloat16 on a GPU). `template_at`: where vLLM
    reads the score template when it runs elsewhere (a container with the file mounted); by
    default the file this package installed."""
    extra = ("--dtype", dtype) if dtype else ()
    if family == "lychee":
        template = template_path()
        if template_version(template) != prompt.PROMPT_VERSION:
            raise RecipeError(
                f"{template} declares prompt_version {template_version(template)!r}, the "
                f"scorer renders {prompt.PROMPT_VERSION!r}: the package is inconsistent"
            )
        overrides = {
            "architectures": ["Qwen2_5_VLForConditionalGeneration"],
            "classifier_from_token": ["no", "yes"],
            "method": "from_2_way_softmax",
            "text_config": {"tie_word_embeddings": False},
        }
        args = (
            "--runner",
            "pooling",
            "--convert",
            "classify",
            "--hf-overrides",
            _json(overrides),
            "--chat-template",
            template_at or str(template),
            "--mm-processor-kwargs",
            _json({"min_pixels": min_pixels, "max_pixels": max_pixels}),
            "--limit-mm-per-prompt",
            _json({"image": 2, "video": 0}),  # a query image and a document image at most
            "--allowed-media-domains",
            "invalid",
            "--block-size",
            str(block_size),
            *extra,
        )
        return Recipe(family, args, template)
    if family == "cross-encoder":
        return Recipe(family, ("--runner", "pooling", *extra), None)
    if family in UNSUPPORTED:
        raise RecipeError(f"{family}: {UNSUPPORTED[family]}")
    raise RecipeError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
