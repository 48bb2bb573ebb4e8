"""The playground page: plain HTML, CSS and JavaScript served by the sidecar at /ui.

No framework and no build step: the files next to this module are served as they are, and the page
talks to the same process's /readyz, /search, /api/rerank and /api/explain.
"""

from __future__ import annotations

from pathlib import Path

UI_DIR = Path(__file__).resolve().parent
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
