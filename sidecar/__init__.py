"""rerank sidecar: multimodal reranking in front of Elasticsearch and OpenSearch."""

__version__ = "0.1.0"

__all__ = ["__version__"]
