"""An image reference's bytes without the network (inline `data:` URIs, files under the local
root) and bytes into a bounded image: the parts of the image loader that touch no socket, run in
worker threads by sidecar.scoring.images."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING

from sidecar.scoring.url_guard import ImageRefused, has_control_character

if TYPE_CHECKING:
    from PIL.Image import Image


def content_digest(data: bytes) -> str:
    """What an image is, for the pair key: a replaced image behind the same URL differs here."""
    return "sha256:" + hashlib.sha256(data).hexdigest()[:32]


def inline(ref: str, content_types: Collection[str], max_bytes: int) -> bytes:
    """An uploaded image sent inline (`data:image/png;base64,...`), under the same type and
    size limits as a fetched one."""
    header, _, payload = ref.partition(",")
    kind = header.removeprefix("data:").split(";")[0].strip().lower()
    if not header.endswith(";base64"):
        raise ImageRefused("bad_url: a data: image must be base64")
    if kind not in content_types:
        raise ImageRefused(f"content_type: {kind or 'missing'} is not an allowed image type")
    if len(payload) * 3 // 4 > max_bytes:
        raise ImageRefused(f"too_large: more than {max_bytes} bytes")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageRefused("corrupt: the data: image is not valid base64") from exc


def read_local(ref: str, root: Path, max_bytes: int) -> bytes:
    """A file under `root` (never outside it), by a relative path or file:// reference."""
    relative = ref.removeprefix("file://") if ref.startswith("file://") else ref
    if not relative or has_control_character(relative):
        raise ImageRefused("bad_url: an empty path, or one with a NUL or control character")
    try:
        path = (root / relative).resolve()
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise ImageRefused(f"bad_url: unusable path ({exc.__class__.__name__})") from exc
    if not path.is_relative_to(root) or Path(relative).is_absolute():
        raise ImageRefused("forbidden_path: outside the local image root")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageRefused(f"too_large: {size} bytes > {max_bytes}")
        return path.read_bytes()
    except OSError as exc:
        raise ImageRefused(f"missing: {relative}") from exc


def decode(data: bytes, max_pixels: int, resize_pixels: int | None) -> Image:
    """RGB pixels, refused before decoding when the header declares more than `max_pixels`
    (decompression bombs), then down-sized to `resize_pixels`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # the pixel limit below is ours to enforce
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
        width, height = opened.size
        if width * height > max_pixels:  # before decoding: bombs stop here
            raise ImageRefused(f"too_many_pixels: {width}x{height} > {max_pixels} pixels")
        opened.load()
        image = opened.convert("RGB")
    except ImageRefused:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageRefused(f"corrupt: {exc.__class__.__name__}") from exc
    except Image.DecompressionBombError as exc:
        raise ImageRefused("too_many_pixels: decompression bomb") from exc
    return shrink(image, resize_pixels)


def shrink(image: Image, resize_pixels: int | None) -> Image:
    """Down-size to the scorer's pixel budget so cached images stay small; the model's own
    resize then has little left to do."""
    if not resize_pixels:
        return image
    width, height = image.size
    if width * height <= resize_pixels:
        return image
    scale = (resize_pixels / (width * height)) ** 0.5
    return image.resize((max(28, int(width * scale)), max(28, int(height * scale))))
