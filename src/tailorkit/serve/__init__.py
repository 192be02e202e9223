"""`tailor serve`: finished runs behind an HTTP API.

settings.py   ServeSettings: limits, batching, bind address, API key (the CLI's flags)
models.py     the served runs: adapter runs on one base share it, one lock per loaded model
batching.py   dynamic batching per served run (max batch size, max wait): /v1/predict inputs, and
              non-streaming generation requests
generation.py greedy/sampled generation: batched (left-padded) for whole answers, streamed token by
              token for SSE
stats.py      request counts, latency quantiles, batch sizes (GET /metrics.json)
prometheus.py the same in Prometheus' text format (GET /metrics), by prometheus_client
schemas.py    request bodies (pydantic): texts, text pairs, base64 images, chat, completions
app.py        the FastAPI app: /v1/predict, /v1/chat/completions, /v1/completions, /health, /metrics,
              /metrics.json
"""
