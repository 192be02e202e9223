"""Metric sinks. Every run writes metrics.jsonl; other sinks plug in beside it.

jsonl     metrics.jsonl, the log every run writes; it hands each record to the trackers too
trackers  train.report_to: TensorBoard, MLflow, W&B (offline)
"""
