"""Unstructured magnitude pruning (Han et al. 2015) with `torch.nn.utils.prune`.

The weights with the smallest |w| become zero: `global` ranks every pruned layer's weights
together (layers with many small weights lose more), `layer` takes the same fraction from each.
The masks are made permanent (`prune.remove`) before saving, so the saved model is a plain
model whose zeros are real; the summary reports the sparsity each layer really has. The file
stays dense (safetensors stores zeros like any other value): the gain is for sparse kernels
and for compressors, not for the file size.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch.nn.utils import prune

from tailorkit.compress.base import Step, register
from tailorkit.config.compress import StepConfig
from tailorkit.models.handle import ModelHandle, weight_sparsity


class PruneConfig(StepConfig):
    amount: float = Field(0.5, gt=0.0, lt=1.0, description="Fraction of the pruned layers' weights set "
                                                           "to zero.")
    scope: Literal["global", "layer"] = Field(
        "global", description="global: the smallest weights of all pruned layers together; layer: "
                              "the same fraction in every layer.")
    include_head: bool = Field(False, description="Prune the task head too (small, and sensitive).")


@register
class Prune(Step):
    name = "prune"
    Config = PruneConfig
    summary = "unstructured magnitude pruning (torch.nn.utils.prune), made permanent"

    def apply(self, handle: ModelHandle, calibration=None) -> dict:
        c = self.config
        layers = handle.weight_layers(c.include_head)
        params = [(m, "weight") for _, m in layers]
        if c.scope == "global":
            prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=c.amount)
        else:
            for module, _ in params:
                prune.l1_unstructured(module, "weight", amount=c.amount)
        for module, _ in params:
            prune.remove(module, "weight")
        return {"scope": c.scope, "target": c.amount, **weight_sparsity(layers)}
