"""The training loop's stand-in for a scikit-learn head: one fit on the cached train features.

It offers what a run asks of the Trainer (fit, the parameter count, the metrics sink, the
validation metrics), so the rest of the run (saving, test outputs, summary) is the same.
"""

from __future__ import annotations

import time
from pathlib import Path

from tailorkit.config.train import TrainConfig
from tailorkit.data.feature_cache import EncodedFeatures
from tailorkit.evaluate.evaluator import evaluate_split, scalar_metrics
from tailorkit.models.handle import ModelHandle
from tailorkit.track.jsonl import METRICS, JsonlSink
from tailorkit.track.trackers import open_trackers
from tailorkit.train.loop import LoopState
from tailorkit.train.losses import TaskLoss


class FitOnce:
    steps_per_epoch = 1

    def __init__(self, handle: ModelHandle, train: EncodedFeatures, validation: EncodedFeatures,
                 cfg: TrainConfig, loss_fn: TaskLoss, labels: list[str], run_dir: Path, where: str) -> None:
        self.handle, self.train_data, self.val_data, self.cfg = handle, train, validation, cfg
        self.loss_fn, self.labels, self.where = loss_fn, labels, where
        self.sink = JsonlSink(run_dir / METRICS, open_trackers(run_dir, cfg.report_to, cfg.mlflow_uri))
        self.prefix_report = {"mode": "off", "why": "the head fits on cached features"}
        self.last_val: dict = {}

    def fit(self, resume: bool = False) -> LoopState:
        head, data = self.handle.model.head, self.train_data
        weights = self.loss_fn.weights  # train.class_weights, as per-example weights
        sample_weight = None if weights is None else weights.numpy()[data.targets]
        started = time.perf_counter()
        head.fit(data.features.numpy(), data.targets, sample_weight, self.where)
        seconds = time.perf_counter() - started
        self.last_val = evaluate_split(self.handle, self.val_data, self.labels, self.loss_fn,
                                       self.cfg.eval_batch_size)
        self.sink.log("eval", 1, {"split": "validation", **scalar_metrics(self.last_val)})
        return LoopState(epoch=1, step=1, samples=len(data), train_seconds=seconds, last_eval_step=1)

    def trained_parameter_count(self) -> tuple[int, int]:
        fitted = self.handle.model.head.size()
        return fitted, fitted + sum(p.numel() for p in self.handle.model.parameters())
