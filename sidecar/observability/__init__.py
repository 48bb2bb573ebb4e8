"""The request middleware (request id, one log line and HTTP metrics per request) and the
Prometheus metrics it feeds: one band of the layers, just under the routes (which hand it what
they observed), middleware over metrics. The JSON log lines are a base part (`sidecar.logs`)."""
