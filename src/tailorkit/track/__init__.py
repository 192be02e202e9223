"""Metric sinks. Every run writes metrics.jsonl; other sinks plug in beside it."""
