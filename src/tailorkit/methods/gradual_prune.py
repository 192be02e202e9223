"""Gradual magnitude pruning during fine-tuning (Zhu & Gupta 2017, "To prune, or not to prune").

Sparsity grows from 0 to `target` along s(t) = target * (1 - (1 - (t - t0) / (t1 - t0))^3)
between the optimiser steps t0 = start * T and t1 = end * T (T: the run's total steps),
in increments every `every` steps; fast at first, while the network has redundancy to spare,
then slower, so accuracy recovers as the last weights go. At each increment the smallest |w|
of all pruned layers together become zero (global magnitude ranking); after every step the
pruned weights are set back to zero, so the optimiser cannot revive them. The saved model is
a plain model whose zeros are real. A resumed run takes its masks from the restored zeros.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from tailorkit.methods.base import METHODS, Method, MethodConfig, register
from tailorkit.models.handle import ModelHandle, weight_sparsity
from tailorkit.train.setup import Setup


class GradualPruneConfig(MethodConfig):
    target: float = Field(0.5, gt=0.0, lt=1.0, description="Final fraction of the pruned layers' weights "
                                                           "that are zero.")
    start: float = Field(0.0, ge=0.0, lt=1.0, description="Fraction of the training steps before "
                                                          "pruning starts.")
    end: float = Field(0.75, gt=0.0, le=1.0, description="Fraction of the training steps at which the "
                                                         "target is reached (the rest recovers).")
    every: int = Field(10, ge=1, description="Optimiser steps between pruning increments.")
    include_head: bool = Field(False, description="Prune the task head too.")

    @model_validator(mode="after")
    def _order(self) -> GradualPruneConfig:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must come after start ({self.start})")
        return self


def schedule(step: int, total: int, target: float, start: float, end: float, every: int) -> float:
    """The sparsity after optimiser step `step` of `total` (Zhu & Gupta's cubic ramp, updated
    every `every` steps)."""
    t0, t1 = start * total, end * total
    if step < t0:
        return 0.0
    if step >= t1:
        return target
    at = t0 + ((step - t0) // every) * every  # the last increment
    return target * (1 - (1 - (at - t0) / (t1 - t0)) ** 3)


@register
class GradualPrune(Method):
    name = "gradual_prune"
    Config = GradualPruneConfig
    summary = "gradual magnitude pruning during fine-tuning (Zhu & Gupta cubic schedule)"

    def __init__(self, config: GradualPruneConfig) -> None:
        super().__init__(config)
        self.layers: list[tuple[str, nn.Module]] = []
        self.masks: list[torch.Tensor] | None = None
        self.sparsity = 0.0

    def check_recipe(self, recipe, task, where: str) -> None:
        others = [METHODS[spec.name] for spec in recipe.methods]
        if any(cls.adapter or cls.fixed_inputs for cls in others):
            raise ValueError(f"{where}: gradual_prune prunes the weights that train; it does not combine "
                             "with adapters or feature extraction (prune the merged model with compress:)")

    def apply(self, handle: ModelHandle) -> None:
        """Nothing changes before training: the pruned layers are chosen here, pruned as it goes."""
        c = self.config
        self.layers = handle.weight_layers(c.include_head)

    @torch.no_grad()
    def on_step(self, handle: ModelHandle, step: int, total_steps: int) -> None:
        c = self.config
        wanted = schedule(step, total_steps, c.target, c.start, c.end, c.every)
        if self.masks is None and wanted > 0:  # a resumed run: the restored zeros are the masks
            self.masks = [m.weight != 0 for _, m in self.layers]
        if wanted > self.sparsity:
            weights = torch.cat([m.weight.abs().flatten() for _, m in self.layers])
            k = int(round(wanted * weights.numel()))
            threshold = weights.kthvalue(k).values if k else weights.min() - 1
            self.masks = [m.weight.abs() > threshold for _, m in self.layers]
            self.sparsity = wanted
        if self.masks is not None:
            for (_, module), mask in zip(self.layers, self.masks, strict=True):
                module.weight.mul_(mask)

    def on_fit_end(self, setup: Setup, seconds: float) -> None:
        setup.info["gradual_prune"] = {"target": self.config.target, **weight_sparsity(self.layers)}
