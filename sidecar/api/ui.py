"""GET /ui: the playground page, its assets, and the demo catalog's product images.

Only the named assets and files directly inside the demo images folder are served: a request
path never reaches the file system unchecked.
"""

from __future__ import annotations

import re

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from sidecar.demo import IMAGES_DIR
from sidecar.errors import NotFound
from sidecar.ui import ASSETS, UI_DIR

router = APIRouter(include_in_schema=False)

_IMAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.(png|jpe?g|webp|gif)$")
_IMAGE_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
}
# The page loads only its own files; product images may come from anywhere (CDNs in production),
# uploads are shown from data: and blob: URLs.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob: http: https:; connect-src 'self'; frame-ancestors 'none'"
)


@router.get("/ui")
async def ui_root() -> RedirectResponse:
    # The page uses relative URLs (assets, images, ../search), so it must live at /ui/.
    return RedirectResponse("ui/", status_code=307)


@router.get("/ui/")
async def ui_index() -> Response:
    return _asset("index.html")


@router.get("/ui/{name}")
async def ui_asset(name: str) -> Response:
    if name not in ASSETS:
        raise NotFound(f"no playground file {name!r}")
    return _asset(name)


@router.get("/ui/images/{name}")
async def ui_image(name: str) -> Response:
    match = _IMAGE_NAME.match(name)
    path = IMAGES_DIR / name
    if match is None or ".." in name or not path.is_file() or path.parent != IMAGES_DIR:
        raise NotFound(f"no demo image {name!r}", field="name")
    return FileResponse(
        path,
        media_type=_IMAGE_TYPES[match.group(1).lower()],
        headers={"cache-control": "public, max-age=3600", "x-content-type-options": "nosniff"},
    )


def _asset(name: str) -> Response:
    return FileResponse(
        UI_DIR / name,
        media_type=ASSETS[name],
        headers={
            "cache-control": "no-cache",
            "content-security-policy": _CSP,
            "x-content-type-options": "nosniff",
        },
    )
