"""What a finished run cost, read the same way wherever runs are compared (`tailor study`'s table,
the objectives of a multi-objective `tailor tune`): its summary.json's counts and timings, and its
inference latency.

Latency: milliseconds per text at batch size 1 through `predict_with` (tokenising included) over the
first test texts, the median after a warm-up; measured once and kept in the run directory as
latency.json. (A compression step's own latency_ms times the model's forward alone, on pre-built
batches.)"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pandas as pd
import torch

from tailorkit.inference import load_run, predict_with
from tailorkit.pipeline.run_dir import SUMMARY

LATENCY = "latency.json"
EXAMPLES = 16


def run_latency_ms(run_dir: Path, examples: int = EXAMPLES) -> float | None:
    """The run's batch-1 latency in ms; None for runs it cannot time (no test texts kept,
    text pairs, images)."""
    cached = run_dir / LATENCY
    if cached.is_file():
        return json.loads(cached.read_text())["batch_1_ms"]
    predictions = run_dir / "predictions_test.csv"
    if not predictions.is_file():
        return None
    frame = pd.read_csv(predictions, nrows=examples)
    if "text" not in frame.columns or frame.empty:
        return None
    recipe, handle, labels, _ = load_run(run_dir)
    if recipe.data.text_pair_column:
        return None
    threads = torch.get_num_threads()
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    try:
        texts = [str(t) for t in frame["text"]]
        predict_with(handle, recipe, labels, texts[:1])  # warm-up
        times = []
        for text in texts:
            started = time.perf_counter()
            predict_with(handle, recipe, labels, [text])
            times.append(time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    ms = round(1000 * statistics.median(times), 3)
    cached.write_text(json.dumps({"batch_1_ms": ms, "examples": len(texts),
                                  "threads": recipe.train.threads or threads}))
    return ms


def peak_memory_mb(summary: dict) -> float | None:
    """Accelerator peak where the run used one, else the process's peak resident memory."""
    device = summary.get("peak_memory") or {}
    return device.get("peak_allocated_mb", summary.get("peak_rss_mb"))


def run_cost(run_dir: Path, name: str) -> float | None:
    """One cost of a finished run by its name in `tailorkit.config.search.COSTS`; None where the
    run cannot give it (latency of an image or text-pair run)."""
    summary = json.loads((run_dir / SUMMARY).read_text())
    value = {"trainable_params": lambda: (summary.get("parameters") or {}).get("trainable"),
             "train_seconds": lambda: summary.get("train_seconds"),
             "samples_per_second": lambda: summary.get("samples_per_second"),
             "peak_memory_mb": lambda: peak_memory_mb(summary),
             "latency_ms": lambda: run_latency_ms(run_dir)}[name]()
    return None if value is None else float(value)
