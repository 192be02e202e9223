"""Task losses and weight penalties."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from tailorkit.config.train import TrainConfig
from tailorkit.errors import TailorError
from tailorkit.evaluate.token_loss import token_loss_sum


def class_weights(targets: np.ndarray, num_labels: int, option) -> torch.Tensor | None:
    """'balanced' weighs class c by n / (k * n_c), as scikit-learn does."""
    if option == "none":
        return None
    if option == "balanced":
        counts = np.bincount(targets, minlength=num_labels).astype(np.float64)
        return torch.tensor(len(targets) / (num_labels * np.maximum(counts, 1)), dtype=torch.float32)
    if len(option) != num_labels:
        raise TailorError(f"train.class_weights has {len(option)} values for {num_labels} classes")
    return torch.tensor(option, dtype=torch.float32)


class TaskLoss:
    """The task's loss, as reported. Training minimises it times `objective_scale`: for
    regression, the same loss on standardised targets (models/target_scaling.py), so gradient
    clipping and the L1/L2 penalties see one scale whatever the targets' units."""

    def __init__(self, output: str, cfg: TrainConfig, weights: torch.Tensor | None,
                 target_std: float = 1.0) -> None:
        kind = cfg.loss
        if kind == "auto":
            kind = {"classes": "cross_entropy", "scalar": "mse"}.get(output, "token_cross_entropy")
        self.shift = output == "next_token"  # a causal LM predicts the next token; an MLM its own
        self.kind = kind
        self.smoothing = cfg.label_smoothing
        self.weights = weights
        self.target_std = target_std

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.kind == "token_cross_entropy":
            total, count = token_loss_sum(logits, labels, self.shift)
            return total / count.clamp(min=1)
        if self.kind == "cross_entropy" and labels.is_floating_point():
            return soft_cross_entropy(logits, labels, self.weights, self.smoothing)
        if self.kind == "cross_entropy":
            return F.cross_entropy(logits, labels, weight=self.weights, label_smoothing=self.smoothing)
        pred = logits.squeeze(-1)
        if self.kind == "mse":
            return F.mse_loss(pred, labels.float())
        return F.l1_loss(pred, labels.float())

    @property
    def objective_scale(self) -> float:
        """What the reported loss is multiplied by to give the training objective."""
        return 1.0 / self.target_std ** {"mse": 2, "mae": 1}.get(self.kind, 0)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None,
                       smoothing: float) -> torch.Tensor:
    """Cross-entropy against soft targets (B, C) (mixup, CutMix), with label smoothing and class
    weights as for hard labels: one-hot targets give exactly F.cross_entropy on their indices (a
    weighted mean over the examples' target weight, as torch does for class indices)."""
    nll = -torch.log_softmax(logits, -1)
    w = torch.ones(logits.size(-1), device=logits.device) if weights is None else weights.to(logits.device)
    smoothed = targets * (1 - smoothing) + smoothing / logits.size(-1)
    return (nll * smoothed * w).sum() / (targets * w).sum()


def penalty(params: list[torch.nn.Parameter], l1: float, l2: float) -> torch.Tensor | float:
    """Explicit L1/L2 terms on trainable weights (separate from decoupled weight decay)."""
    total: torch.Tensor | float = 0.0
    for p in params:
        if l1:
            total = total + l1 * p.abs().sum()
        if l2:
            total = total + l2 * p.pow(2).sum()
    return total
