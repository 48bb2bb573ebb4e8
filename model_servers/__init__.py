"""Model servers the sidecar can score through, run locally for development and tests.

Like `es_integration.engines`, this package knows nothing of the sidecar: it obtains a server
(vLLM's CPU build, in its own cached environment), starts it on 127.0.0.1, and stops it by pid.
"""
