"""Structured pruning of the feed-forward neurons: the tensors really shrink.

Each block's FFN maps the hidden size up to `intermediate_size` neurons and back down. A neuron
j is one row of the up projection (and of the gate, for Llama-style blocks) and one column of
the down projection. Its importance is ||W_up[j]|| * ||W_down[:, j]|| (the product bounds how
much it can move the block's output), and the least important go. The same number goes in
every block, so the model keeps one `intermediate_size` and saves and loads as a plain Hugging
Face model with a smaller config: the file is smaller and inference faster. Recovery is a
normal fine-tune that starts from the pruned model folder (`model.name`, see docs/compression.md).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from tailorkit.compress.base import Step, register
from tailorkit.config.compress import StepConfig
from tailorkit.errors import TailorError
from tailorkit.models.handle import ModelHandle
from tailorkit.models.structure import shrink_linear


class PruneFFNConfig(StepConfig):
    amount: float = Field(0.3, gt=0.0, lt=1.0, description="Fraction of each block's FFN neurons removed "
                                                           "(the same in every block).")


@register
class PruneFFN(Step):
    name = "prune_ffn"
    Config = PruneFFNConfig
    summary = "structured pruning of FFN neurons by weight importance; tensors and file shrink"

    def check_recipe(self, recipe, task, where: str) -> None:
        if task.modality != "text":
            raise ValueError(f"{where}.prune_ffn: prunes the feed-forward neurons of transformer "
                             f"blocks; task {task.name} has none")

    @torch.no_grad()
    def apply(self, handle: ModelHandle, calibration=None) -> dict:
        config = handle.model.config
        size = getattr(config, "intermediate_size", None)
        if size is None:
            raise TailorError("prune_ffn: the model's config has no intermediate_size (not a "
                              "transformer with feed-forward blocks)")
        keep = size - int(round(self.config.amount * size))
        blocks = handle.blocks
        for block in blocks:
            ups, down = ffn_of(block, size)
            importance = torch.stack([u.weight.norm(dim=1) for u in ups]).prod(0) * down.weight.norm(dim=0)
            kept = importance.topk(keep).indices.sort().values
            for up in ups:
                shrink_linear(up, kept, dim=0)
            shrink_linear(down, kept, dim=1)
        config.intermediate_size = keep
        return {"amount": self.config.amount, "neurons": {"before": size, "after": keep},
                "blocks": len(blocks)}


def ffn_of(block: nn.Module, size: int) -> tuple[list[nn.Linear], nn.Linear]:
    """The up projections (and gate) into the `size` FFN neurons, and the down projection."""
    linears = [m for m in block.modules() if isinstance(m, nn.Linear)]
    ups = [m for m in linears if m.out_features == size]
    downs = [m for m in linears if m.in_features == size]
    if not ups or len(downs) != 1:
        raise TailorError(f"prune_ffn: cannot find the feed-forward pair of size {size} in "
                          f"{type(block).__name__}")
    return ups, downs[0]
