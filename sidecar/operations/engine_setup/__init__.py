"""The engine-side objects that make an engine call this sidecar as its reranker: OpenSearch's
ML Commons connector, model and search pipeline (opensearch.py); Elasticsearch's `custom`
inference endpoint (elasticsearch.py). Each talks to the engine's REST API only."""
