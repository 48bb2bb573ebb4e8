"""Lychee-rerank-mm's prompt, rendered the way Qwen2.5-VL's ChatML template renders it.

One system turn with the judge instruction, one user turn whose parts are, in order:
`<Instruct>: {instruction}`, `<Query>:`, the query image, the query text, `\\n<Document>:`, the
document image, the document text; then the assistant generation prompt. Rendering it here (not
through a checkpoint's chat template) keeps the prompt identical across checkpoints and lets the
tests pin it to a golden string; a test checks it against a ChatML template too.
"""

from __future__ import annotations

SYSTEM_PROMPT = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".'
)
# Bump when the rendered prompt changes in any way: it is part of the scorer's score identity, so
# a new prompt never reuses scores cached under the old one.
PROMPT_VERSION = "lychee-chatml-1"
IMAGE_PAD = "<|image_pad|>"
IMAGE_PLACEHOLDER = f"<|vision_start|>{IMAGE_PAD}<|vision_end|>"


def user_parts(
    instruction: str, query_text: str, query_image: bool, doc_text: str, doc_image: bool
) -> list[dict[str, str]]:
    """The user turn as chat-template parts ({"type": "text"|"image", ...})."""
    parts: list[dict[str, str]] = [
        {"type": "text", "text": f"<Instruct>: {instruction}"},
        {"type": "text", "text": "<Query>:"},
    ]
    if query_image:
        parts.append({"type": "image"})
    if query_text:
        parts.append({"type": "text", "text": query_text})
    parts.append({"type": "text", "text": "\n<Document>:"})
    if doc_image:
        parts.append({"type": "image"})
    if doc_text:
        parts.append({"type": "text", "text": doc_text})
    return parts


def messages(
    instruction: str, query_text: str, query_image: bool, doc_text: str, doc_image: bool
) -> list[dict[str, object]]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": user_parts(instruction, query_text, query_image, doc_text, doc_image),
        },
    ]


def render(
    instruction: str, query_text: str, query_image: bool, doc_text: str, doc_image: bool
) -> str:
    """The full prompt with one `<|image_pad|>` per image (before expansion)."""
    body = "".join(
        IMAGE_PLACEHOLDER if p["type"] == "image" else p["text"]
        for p in user_parts(instruction, query_text, query_image, doc_text, doc_image)
    )
    return (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"
        f"<|im_start|>user\n{body}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def expand_image_pads(prompt: str, tokens_per_image: list[int]) -> str:
    """Repeat the i-th `<|image_pad|>` once per language-model token of the i-th image
    (grid t*h*w // merge_size**2), as Qwen2.5-VL's processor does."""
    pieces = prompt.split(IMAGE_PAD)
    if len(pieces) - 1 != len(tokens_per_image):
        raise ValueError(
            f"prompt has {len(pieces) - 1} image placeholders for {len(tokens_per_image)} images"
        )
    out = [pieces[0]]
    for count, piece in zip(tokens_per_image, pieces[1:], strict=True):
        out.append(IMAGE_PAD * count)
        out.append(piece)
    return "".join(out)
