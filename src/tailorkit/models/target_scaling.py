"""Regression targets standardised for training, folded back into the head for saving.

A new regression head starts near output 0 with a small scale. With targets such as 1-5 stars
or prices, most of training goes into moving the bias towards the targets' mean, and at
fine-tuning learning rates it never gets there: every prediction lands near the same value.
The standard cure is to train on z = (y - mean) / std. Here the head's last linear layer learns
z, and a forward hook maps its output back, y = mean + std * z, so every prediction (validation,
test, predict) is in the target's own units. Before the final model is saved, the map is folded
into the layer (W <- std * W, b <- std * b + mean) and the hook removed: the saved model is a
plain model that predicts in target units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class TargetScaling:
    mean: float
    std: float

    @classmethod
    def fit(cls, targets: np.ndarray, centre: bool = True) -> TargetScaling:
        """From the training targets. Without `centre` (a head with no bias to hold the mean)
        only the scale is learnt: std is then the targets' root mean square."""
        y = np.asarray(targets, dtype=np.float64)
        mean = float(y.mean()) if centre else 0.0
        std = float(np.sqrt(np.mean((y - mean) ** 2)))
        return cls(mean, std if std > 1e-12 else 1.0)  # constant targets: nothing to scale

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return output * self.std + self.mean


def output_layer(model: nn.Module, head_modules: list[str]) -> nn.Linear | None:
    """The head's last linear layer with one output (the regression value)."""
    found = None
    for name, module in model.named_modules():
        in_head = any(name == h or name.startswith(h + ".") for h in head_modules)
        if in_head and isinstance(module, nn.Linear) and module.out_features == 1:
            found = module
    return found


def scale_output(layer: nn.Linear, scaling: TargetScaling) -> None:
    layer.register_forward_hook(scaling)


def fold_target_scaling(model: nn.Module) -> None:
    """Fold every scaling hook into its layer's weights (copies a wrapper made, e.g. PEFT's
    modules_to_save, included); the model computes the same, without hooks."""
    for module in model.modules():
        for key, hook in list(module._forward_hooks.items()):
            if isinstance(hook, TargetScaling):
                with torch.no_grad():
                    module.weight.mul_(hook.std)
                    if module.bias is not None:
                        module.bias.mul_(hook.std).add_(hook.mean)
                del module._forward_hooks[key]
