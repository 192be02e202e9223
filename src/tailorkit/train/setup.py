"""What a run trains on, handed from the task to the methods to the training loop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from tailorkit.config.train import TrainConfig
from tailorkit.models.handle import ModelHandle
from tailorkit.train.losses import TaskLoss


class TrainingHooks(Protocol):
    """What the loop asks of a method (tailorkit.methods.Method has all of it)."""

    keeps_frozen_prefix: bool
    needs_logits: bool

    def lr_scales(self, handle: ModelHandle) -> dict[str, float]: ...

    def on_epoch_start(self, handle: ModelHandle, epoch: int) -> None: ...

    def on_step(self, handle: ModelHandle, step: int, total_steps: int) -> None: ...

    def objective(self, objective: torch.Tensor, logits: torch.Tensor, batch: dict) -> torch.Tensor: ...


@dataclass
class Setup:
    handle: ModelHandle
    splits: dict  # name -> EncodedSplit | EncodedChat | EncodedMLM | EncodedImages | EncodedFeatures
    labels: list[str]
    loss_fn: TaskLoss
    train: TrainConfig  # the loop's settings (a method may change them: features' head epochs)
    methods: list = field(default_factory=list)  # the applied methods, in recipe order
    test_names: list[str] = field(default_factory=list)  # rows of predictions_test.csv
    test_pairs: list[str] | None = None  # pair tasks: the second text of each test row
    test_targets: object = None
    prompts: list = field(default_factory=list)  # causal LMs: fixed validation prompts
    info: dict = field(default_factory=dict)  # task and method facts for summary.json
    fingerprint: dict = field(default_factory=dict)  # split -> hash of what it holds (resume checks it)
    # Reads another finished run (distillation's teacher): pipeline.load.load_run, handed in by
    # the pipeline, since methods sit below the code that loads runs.
    load_run: Callable | None = None
