"""Layer-wise learning-rate decay and gradual unfreezing.

LLRD (Clark et al. 2020, ELECTRA; Sun et al. 2019): a parameter at depth d of
n blocks gets lr * decay^(n + 1 - d); the head (d = n + 1) gets the base rate
and the embeddings (d = 0) the smallest. Lower layers hold general features
and should move least.

Gradual unfreezing (Howard & Ruder 2018, ULMFiT): the first epoch trains only
the head; every `every` epochs one more block, from the top down, joins. It
acts on what earlier methods left trainable: alone, the whole model; after
`lora`, the LoRA matrices block by block.
"""

from __future__ import annotations

from pydantic import Field

from tailorkit.methods.base import Method, MethodConfig, chosen_before, register


class LayerwiseLRConfig(MethodConfig):
    decay: float = Field(0.9, gt=0.0, le=1.0, description="LR factor per block going down.")


@register
class LayerwiseLR(Method):
    name = "layerwise_lr"
    Config = LayerwiseLRConfig
    summary = "layer-wise learning-rate decay; trains what earlier methods left trainable"
    keeps_frozen_prefix = True

    def apply(self, handle) -> None:
        """Changes no trainability: alone, everything trains; after `freeze`, what it left."""

    def lr_scales(self, handle) -> dict[str, float]:
        top = handle.num_blocks + 1
        return {n: self.config.decay ** (top - handle.depth(n)) for n, _ in handle.named_parameters()}


class GradualUnfreezeConfig(MethodConfig):
    every: int = Field(1, ge=1, description="Epochs between unfreezing the next block.")
    embeddings: bool = Field(True, description="Unfreeze the embeddings after the last block.")


@register
class GradualUnfreeze(Method):
    name = "gradual_unfreeze"
    Config = GradualUnfreezeConfig
    summary = "ULMFiT gradual unfreezing of what earlier methods left trainable: head first"

    def apply(self, handle) -> None:
        chosen = chosen_before(handle) or [p for _, p in handle.named_parameters()]
        self._eligible = {id(p) for p in chosen}  # after [lora], LoRA opens block by block
        self.on_epoch_start(handle, 0)

    def on_epoch_start(self, handle, epoch: int) -> None:
        open_blocks = epoch // self.config.every
        lowest = max(handle.num_blocks + 1 - open_blocks, 0 if self.config.embeddings else 1)
        for name, p in handle.named_parameters():
            if id(p) in self._eligible:
                p.requires_grad_(handle.depth(name) >= lowest)
