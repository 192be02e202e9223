"""Structured pruning of a CNN's channels: MobileNetV2's expanded channels really go.

Each inverted-residual block widens its input with a 1x1 conv to `hidden` channels, filters
each with a 3x3 depthwise conv, and projects back with a 1x1 conv. A hidden channel j is one
output of the expansion, one depthwise filter and one input of the projection, with a batch
norm after each of the first two: its importance is the product of their norms,
||W_expand[j]|| * |s1_j| * ||W_depthwise[j]|| * |s2_j| * ||W_project[:, j]||, where s = gamma /
sqrt(var + eps) is each batch norm's scale (the FFN-neuron criterion of prune_ffn, through the
norms). The same share goes in every block that expands (the first block does not), rounded
to a multiple of 8 channels, so the model saves as a MobileNetV2 with narrower `hidden` widths,
and its convolutions, file and inference time shrink. Accuracy recovers with a short
fine-tune from the pruned model folder.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from tailorkit.compress.base import Step, register
from tailorkit.config.compress import StepConfig
from tailorkit.errors import TailorError
from tailorkit.models.handle import ModelHandle
from tailorkit.models.mobilenet_v2 import InvertedResidual, MobileNetV2


class PruneChannelsConfig(StepConfig):
    amount: float = Field(0.3, gt=0.0, lt=1.0, description="Fraction of each expanding block's hidden "
                                                           "channels removed (the same in every block).")


@register
class PruneChannels(Step):
    name = "prune_channels"
    Config = PruneChannelsConfig
    summary = "structured pruning of MobileNetV2's expanded channels by weight importance; tensors shrink"

    def check_recipe(self, recipe, task, where: str) -> None:
        if task.modality != "image":
            raise ValueError(f"{where}.prune_channels: prunes convolution channels of CNNs; for text "
                             "models use prune_ffn")

    @torch.no_grad()
    def apply(self, handle: ModelHandle, calibration=None) -> dict:
        if not isinstance(handle.model, MobileNetV2):
            raise TailorError("prune_channels: the model is not tailorkit's MobileNetV2")
        before = after = 0
        blocks = [b for b in handle.model.features if isinstance(b, InvertedResidual) and len(b.conv) == 4]
        for block in blocks:
            expand, dw, project = block.conv[0], block.conv[1], block.conv[2]
            keep = _multiple_of_8(block.hidden * (1 - self.config.amount))
            importance = (expand[0].weight.flatten(1).norm(dim=1) * _scale(expand[1]).abs()
                          * dw[0].weight.flatten(1).norm(dim=1) * _scale(dw[1]).abs()
                          * project.weight.flatten(1).norm(dim=0))
            kept = importance.topk(keep).indices.sort().values
            expand[0], expand[1] = _conv(expand[0], out=kept), _norm(expand[1], kept)
            dw[0], dw[1] = _conv(dw[0], out=kept, depthwise=True), _norm(dw[1], kept)
            block.conv[2] = _conv(project, inputs=kept)
            before, after, block.hidden = before + block.hidden, after + keep, keep
        return {"amount": self.config.amount, "channels": {"before": before, "after": after},
                "blocks": len(blocks)}


def _multiple_of_8(channels: float) -> int:
    """Widths in multiples of 8: int8 convolution kernels (fbgemm) fall back to a path 10-20x
    slower for widths such as 67 or 101 (measured, docs/compression.md)."""
    return max(8, 8 * round(channels / 8))


def _scale(bn: nn.BatchNorm2d) -> torch.Tensor:
    return bn.weight / torch.sqrt(bn.running_var + bn.eps)


def _conv(conv: nn.Conv2d, out: torch.Tensor | None = None, inputs: torch.Tensor | None = None,
          depthwise: bool = False) -> nn.Conv2d:
    """A copy of `conv` with only the output channels `out` (or input channels `inputs`)."""
    weight = conv.weight
    if out is not None:
        weight = weight.index_select(0, out)
    if inputs is not None and not depthwise:
        weight = weight.index_select(1, inputs)
    n_out, n_in = weight.shape[0], (len(out) if depthwise else weight.shape[1] * conv.groups)
    new = nn.Conv2d(n_in, n_out, conv.kernel_size, conv.stride, conv.padding,
                    groups=n_out if depthwise else conv.groups, bias=conv.bias is not None)
    new.weight.copy_(weight)
    if conv.bias is not None:
        new.bias.copy_(conv.bias if out is None else conv.bias.index_select(0, out))
    return new


def _norm(bn: nn.BatchNorm2d, kept: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(kept), bn.eps, bn.momentum)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name).copy_(getattr(bn, name).index_select(0, kept))
    new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new.train(bn.training)
