"""Local Elasticsearch / OpenSearch engines for development and integration tests.

    python -m es_integration.engines start elasticsearch
    # prints {"engine", "version", "url", "pid", "startup_s"}
    python -m es_integration.engines stop elasticsearch

or from Python: ``state = start("opensearch", ".engines")`` ... ``stop("opensearch", ".engines")``;
``start("opensearch", ".engines", plugins=["ml"])`` also installs the ML plugins (plugins.py).
Standard library only. See README.md in this folder.
"""

from .errors import DownloadRefused, EngineError
from .local import DEFAULT_STATE_DIR, ENGINES, start, status, stop
from .plugins import PLUGIN_SETS

__all__ = [
    "DEFAULT_STATE_DIR",
    "ENGINES",
    "PLUGIN_SETS",
    "DownloadRefused",
    "EngineError",
    "start",
    "status",
    "stop",
]
