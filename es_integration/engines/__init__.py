"""Local Elasticsearch / OpenSearch engines for development and integration tests.

    python -m es_integration.engines start elasticsearch
    # prints {"engine", "version", "url", "pid", "startup_s"}
    python -m es_integration.engines stop elasticsearch

or from Python: ``state = start("opensearch", ".engines")`` ... ``stop("opensearch", ".engines")``.
Standard library only. See README.md in this folder.
"""

from .local import DEFAULT_STATE_DIR, ENGINES, EngineError, start, status, stop

__all__ = ["DEFAULT_STATE_DIR", "ENGINES", "EngineError", "start", "status", "stop"]
