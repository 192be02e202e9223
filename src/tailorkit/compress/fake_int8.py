"""The training-time twin of dynamic int8 (compress/quantize.py), for quantization-aware training
of text models.

A fake-quantised layer rounds exactly as the int8 kernel it will become (fbgemm's dynamic
linear) and stays floating point, so training sees the rounding while gradients pass straight
through it (the straight-through estimator; Jacob et al. 2018):
- weights: per output channel, symmetric, scale = max|w| / 127.5, codes in [-128, 127];
- inputs: per tensor, from the batch's own range (widened to hold 0), 128 levels: fbgemm
  computes its dynamic activations with `reduce_range` on x86, codes in [0, 127].
torch.ao's QAT has no dynamic-activation linear and torchao's per-token fake quantiser would
train for a kernel that is not the one deployed, hence this small module.

The layer swaps class in place (`nn.Linear` <-> `FakeInt8Linear`): its parameters, their names
and the optimiser's references to them stay as they were, so checkpoints and resume need nothing
new.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPS = torch.finfo(torch.float32).eps


class FakeInt8Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(fake_int8_input(x), fake_int8_weight(self.weight), self.bias)


def fake_int8_weight(weight: torch.Tensor) -> torch.Tensor:
    w = weight.detach()
    scale = (w.abs().amax(1) / 127.5).clamp(min=EPS)
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return _straight_through(weight, torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -128, 127))


def fake_int8_input(x: torch.Tensor) -> torch.Tensor:
    low, high = x.detach().min().clamp(max=0), x.detach().max().clamp(min=0)
    scale = ((high - low) / 127).clamp(min=EPS)
    zero = (-low / scale).round().clamp(0, 127).int()
    rounded = torch.fake_quantize_per_tensor_affine(x.detach(), scale.float(), zero, 0, 127)
    return _straight_through(x, rounded)


def _straight_through(x: torch.Tensor, rounded: torch.Tensor) -> torch.Tensor:
    """`rounded` forward, the identity backward. The ranges come from the tensors themselves, so
    nothing lies outside them: the top value that rounds one level past the edge (127.5 -> 127)
    keeps its gradient, where PyTorch's fake quantisers would zero it."""
    return x + (rounded - x).detach()


def fake_quantize_linears(model: nn.Module, keep_fp32: list[str]) -> list[str]:
    """Every nn.Linear whose name has no part in `keep_fp32` becomes a FakeInt8Linear."""
    names = [n for n, m in model.named_modules()
             if type(m) is nn.Linear and not set(n.split(".")) & set(keep_fp32)]
    for name in names:
        model.get_submodule(name).__class__ = FakeInt8Linear
    return names


def real_linears(model: nn.Module) -> list[str]:
    """Undo `fake_quantize_linears`: the float layers the int8 conversion takes."""
    names = [n for n, m in model.named_modules() if type(m) is FakeInt8Linear]
    for name in names:
        model.get_submodule(name).__class__ = nn.Linear
    return names
