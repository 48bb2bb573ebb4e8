"""Fault suite against real local processes on 127.0.0.1:

    python -m bench.faults [--out DIR] [--seconds N] [--only SCENARIO[,SCENARIO]]
                           [--engine opensearch|elasticsearch] [--engine-state-dir DIR]
                           [--fuzz-requests N] [--seed S]

Scenarios, one module each, in the order they run (each load phase bounded by --seconds):

  redis        Redis SIGKILLed and restarted under /search load (bench.faults.redis)
  hostile      a fixed list of hostile bodies on every body route (bench.faults.hostile)
  rules        the rules file rewritten 20 times under load, invalid files among them
  fuzz         hypothesis-generated bodies on every JSON route; 5xx other than 503/504 fail
  remote       a `remote` scorer whose peer sidecar answers through a delaying proxy
  images       a Lychee (tiny Qwen2.5-VL) sidecar reading images from slow and dead hosts
  slow_engine  a real OpenSearch behind a delaying proxy: 504 within timeout_ms + 50 ms
  engine_kill  the real OpenSearch SIGKILLed under load and restarted on its data

Shared: bench.faults.common (options, the shared sidecar and engine, the load loop and its
records), bench.faults.proxy (the TCP proxy that delays, refuses and follows a restarted
upstream), bench.faults.engine (the real engine, indexed with `rerank-sidecar index`, and the
sidecar searching it), bench.faults.report (table and plot), bench.faults.progress (the
progress lines on stderr, which all of them write). Every process this starts (redis,
sidecars, the engine) is stopped by its own pid; the engine with `es_integration.engines.stop`.
Results: a table on stdout (exit status 1 when a check fails), progress on stderr,
`<out>/faults.json` and `<out>/faults.png`.
"""
