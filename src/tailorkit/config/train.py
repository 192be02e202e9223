"""`train:` — optimiser, schedule, loss options, evaluation, checkpoints and speed settings."""

from __future__ import annotations

import math
import re
import warnings
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from tailorkit.config.base import Strict

Rate = Annotated[float, Field(ge=0.0, lt=1.0)]
# The peak learning rate of full and partial fine-tuning, and of any method without a default of
# its own (`Method.default_lr`): the usual BERT fine-tuning range is 2e-5 to 5e-5.
TRAINER_LR = 5e-5


class EarlyStopping(Strict):
    metric: str = Field("loss", description="Validation metric to watch, e.g. loss, accuracy, f1_macro.")
    patience: int = Field(3, ge=1, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0.0, description="Smallest change that counts as improvement.")


class TrainConfig(Strict):
    epochs: float = Field(3, ge=0, description="Passes over train; fractions allowed; 0 only evaluates.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimiser steps.")
    batch_size: int = Field(16, ge=1, description="Examples per micro-batch.")
    eval_batch_size: int = Field(64, ge=1, description="Examples per batch when evaluating.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimiser step.")
    lr: float | None = Field(
        None, gt=0, description="Peak learning rate (after warmup). Left out: the methods' default, "
                                "written into the run's recipe.yaml: 5e-5 for full and partial "
                                "fine-tuning, higher for adapters (README: Learning-rate defaults).")
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adamw", description="SGD uses momentum/nesterov.")
    betas: tuple[Rate, Rate] = Field((0.9, 0.999), description="Adam/AdamW moment decay rates, each "
                                                               "in [0, 1).")
    momentum: float = Field(0.9, ge=0.0, description="SGD only.")
    nesterov: bool = Field(False, description="SGD only.")
    weight_decay: float = Field(0.01, ge=0.0, description="Decoupled for AdamW; L2 in grad otherwise.")
    l1: float = Field(0.0, ge=0.0, description="L1 penalty on trainable weights, added to the loss.")
    l2: float = Field(0.0, ge=0.0, description="L2 penalty on trainable weights, added to the loss.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping; null disables.")
    on_nonfinite: Literal["stop", "skip_batch"] = Field(
        "stop", description="A step whose loss or gradients are NaN or infinite: stop with an error "
                            "(the last checkpoint is kept), or skip that batch's update.")
    schedule: Literal["constant", "linear", "cosine", "step", "polynomial"] = Field(
        "linear", description="LR after warmup; linear and cosine decay to 0.")
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="Fraction of steps warming up.")
    warmup_steps: int | None = Field(None, ge=0, description="Overrides warmup_ratio.")
    step_size: int = Field(100, ge=1, description="step schedule: steps between decays.")
    gamma: float = Field(0.5, gt=0, description="step schedule: decay factor.")
    power: float = Field(1.0, gt=0, description="polynomial schedule: exponent.")
    loss: Literal["auto", "cross_entropy", "mse", "mae"] = Field(
        "auto", description="auto: cross_entropy for classification, mse for regression.")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Cross-entropy label smoothing.")
    class_weights: Literal["none", "balanced"] | list[float] = Field(
        "none", description="Cross-entropy class weights: balanced = inverse class frequency.")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every N steps; else per epoch.")
    checkpoint_steps: int = Field(50, ge=1, description="Write a resumable checkpoint every N steps.")
    early_stopping: EarlyStopping | None = Field(
        None, description="Stop when a validation metric stops improving; keeps the best weights.")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Autocast dtype of forward, backward and evaluation; fp16 adds a gradient "
                            "scaler (saved in checkpoints). Replaces the deprecated bf16: true.")
    device: str = Field("auto", description="auto (CUDA if present, then Apple MPS, then CPU), cpu, "
                                            "cuda, cuda:N or mps.")
    threads: int | None = Field(None, ge=1, description="torch threads; default: free cores.")
    lm_head_chunk: int = Field(
        128, ge=0, description="Causal LMs: run the output layer and token loss on this many "
                               "labelled tokens at a time, so full-vocabulary logits never exist "
                               "at once (docs/causal-lm.md, Memory); 0 = the plain loss.")
    activation_checkpointing: bool | int = Field(
        False, description="Keep only block inputs and recompute each block in the backward: "
                           "true = every block, N = every N-th block. Less memory, slower steps.")
    length_grouping: bool | int | None = Field(
        None, description="Batch similar lengths to avoid padding: sort within windows of N batches "
                          "of shuffled examples (true = 50, as the Trainer's group_by_length); "
                          "false = random batches. Left out: the task's default, written into the "
                          "run's recipe.yaml: false for causal LMs, where grouping cost 5-10% in "
                          "loss (docs/causal-lm.md), true for the others.")
    frozen_prefix: Literal["cache", "eval", "train"] = Field(
        "cache", description="Frozen lower blocks: cache = no dropout, computed once and reused "
                             "where exact; eval = no dropout, recomputed; train = dropout on.")
    cache_memory_mb: int = Field(
        4096, ge=0, description="frozen_prefix cache: beyond this, states go to a memory-mapped "
                                "file in the run directory.")
    progress: bool = Field(True, description="Show a progress bar.")
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(
        default_factory=list, description="Also send metrics.jsonl's records and the recipe's values to "
                                          "these trackers (TensorBoard, MLflow, W&B offline).")
    mlflow_uri: str | None = Field(None, description="report_to mlflow: the tracking store; default "
                                                     "$MLFLOW_TRACKING_URI, else RUN/mlflow.db (SQLite).")

    @property
    def bf16(self) -> bool:
        """precision: bf16 (what the deprecated field `bf16` said; many readers still ask this)."""
        return self.precision == "bf16"

    @model_validator(mode="before")
    @classmethod
    def _bf16_alias(cls, data: Any) -> Any:
        """`bf16: true|false` is read as `precision: bf16|fp32`, with a deprecation warning."""
        if not isinstance(data, dict) or "bf16" not in data:
            return data
        data = dict(data)
        bf16 = data.pop("bf16")
        if not isinstance(bf16, bool):
            raise ValueError(f"bf16 (deprecated: use precision: bf16) must be a boolean, got {bf16!r}")
        wanted = "bf16" if bf16 else "fp32"
        if data.get("precision", wanted) != wanted and bf16:
            raise ValueError(f"bf16: true and precision: {data['precision']} disagree; drop bf16 "
                             "(deprecated) and keep precision")
        data.setdefault("precision", wanted)
        warnings.warn(f"train.bf16 is deprecated: write train.precision: {wanted} instead "
                      "(read as that now)", FutureWarning, stacklevel=2)
        return data

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> TrainConfig:
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise ValueError("nesterov: true needs momentum > 0 (Nesterov's step looks ahead along the "
                             "momentum); set train.momentum, e.g. 0.9, or nesterov: false")
        return self

    @field_validator("activation_checkpointing")
    @classmethod
    def _every_n(cls, value: bool | int) -> bool | int:
        if not isinstance(value, bool) and value < 1:
            raise ValueError(f"must be true, false or N >= 1 (every N-th block), got {value}")
        return value

    @field_validator("length_grouping")
    @classmethod
    def _window(cls, value: bool | int | None) -> bool | int | None:
        if not isinstance(value, bool) and value is not None and value < 1:
            raise ValueError(f"must be true, false or N >= 1 (batches per sorted window), got {value}")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N (N = 0, 1, ...) or mps, got {value!r}")
        return value

    @property
    def grouping(self) -> bool | int:
        """`length_grouping`; where no recipe resolved it (a TrainConfig built on its own), true."""
        return True if self.length_grouping is None else self.length_grouping

    @property
    def peak_lr(self) -> float:
        """`lr`; where no recipe resolved it (a TrainConfig built on its own), the trainer's default."""
        return TRAINER_LR if self.lr is None else self.lr

    @field_validator("class_weights", mode="before")
    @classmethod
    def _class_weights(cls, value: Any) -> Any:
        # One clear message instead of one per member of the union.
        ok = value in ("none", "balanced") if isinstance(value, str) else (
            isinstance(value, list | tuple)
            and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                    for v in value))
        if not ok:  # a zero: a batch of only that class would average its loss over weight 0
            raise ValueError(f"must be 'none', 'balanced' or a list of per-class weights, each a finite "
                             f"number > 0 (to leave a class out, remove its rows), got {value!r}")
        return value
