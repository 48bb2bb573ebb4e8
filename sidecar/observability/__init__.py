"""Operations: Prometheus metrics, JSON-lines logs with request ids, the request middleware."""
