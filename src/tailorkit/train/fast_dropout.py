"""Dropout with a cheaper random draw, for training on the CPU.

torch's CPU dropout draws one Mersenne-Twister number per element. On MiniLM (16 x 128 tokens)
its masks took about a quarter of a training step, most of it in attention's dropout over 16 x
12 x 128 x 128 probabilities (bench/RESULTS.md, "Dropout masks"). Here one 64-bit draw gives
four elements a 15-bit uniform number each (`random_()` fills 63 bits; the lanes' top bits are
masked off). An element is dropped when its number is below t = round(p 2^15), so the drop rate
is t / 2^15, within 2^-16 of p, and kept elements are scaled by 1 / (1 - t / 2^15), so the
expectation is unchanged (a bf16 tensor's scale is rounded to bf16, as torch's is). The draws
come from torch's generator, so a seed and a checkpoint's RNG state fix them as before. The
backward keeps the mask as bytes (torch's CPU dropout keeps a mask in the input's dtype).

Attention dropout happens inside `scaled_dot_product_attention`, which then runs its math path
on the CPU: `attention` is transformers' eager attention with this dropout instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

LANE_BITS = 15


def _threshold(p: float) -> int:
    return round(p * 2**LANE_BITS)


def applies(x: torch.Tensor, p: float) -> bool:
    """Whether `dropout` takes over: a CPU tensor and a rate its 15-bit lanes can express."""
    return x.device.type == "cpu" and 0 < _threshold(p) < 2**LANE_BITS


def keep_mask(x: torch.Tensor, p: float) -> tuple[torch.Tensor, float]:
    """Which elements of x dropout at rate p keeps (bool, x's shape), and the scale of the kept
    ones. Only where `applies(x, p)`."""
    threshold = _threshold(p)
    draws = torch.empty((x.numel() + 3) // 4, dtype=torch.int64, device=x.device).random_()
    lanes = draws.view(torch.int16)[: x.numel()].view(x.shape)
    return lanes.bitwise_and_(2**LANE_BITS - 1) >= threshold, 2**LANE_BITS / (2**LANE_BITS - threshold)


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of x at rate p (rounded to a multiple of 2^-15)."""
    if not applies(x, p):
        return F.dropout(x, p, training=True)
    return _MaskedScale.apply(x, *keep_mask(x, p))


class _MaskedScale(torch.autograd.Function):
    """y = x keep scale, keeping only the mask (a byte per element) for the backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return x * scaled_mask(keep, x.dtype, scale)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return grad * scaled_mask(keep, grad.dtype, ctx.scale), None, None


def scaled_mask(keep: torch.Tensor, dtype: torch.dtype, scale: float) -> torch.Tensor:
    """0 / scale in `dtype`: what dropout multiplies by. Through uint8: a product with a
    boolean tensor, or its conversion, runs unvectorised on the CPU."""
    return keep.view(torch.uint8).to(dtype).mul_(scale)


class FastDropout(nn.Dropout):
    """nn.Dropout (same state, same repr) whose training forward on the CPU is `dropout`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not self.inplace:  # `dropout` hands what it cannot do to torch
            return dropout(x, self.p)
        return super().forward(x)


@contextmanager
def fast_dropout(model: nn.Module) -> Iterator[int]:
    """Inside, the nn.Dropout layers of `model` draw their masks with `dropout`; yields how many.
    Outside, they are plain nn.Dropout again."""
    layers = [m for m in model.modules() if type(m) is nn.Dropout]
    for layer in layers:
        layer.__class__ = FastDropout
    try:
        yield len(layers)
    finally:
        for layer in layers:
            layer.__class__ = nn.Dropout


def attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
              p: float, scale: float | None = None, is_causal: bool = False) -> torch.Tensor:
    """softmax(q k^T scale + mask) with dropout p, times v, as transformers' eager attention
    computes it (Llama's `eager_attention_forward`: under autocast the products and the
    probabilities in bf16, the softmax in fp32), with this file's dropout. SDPA's math path
    would compute in fp32 throughout under bf16, at twice the cost. A boolean `mask` (True:
    attend) masks with the dtype's lowest value, as transformers' eager masks do; `is_causal`
    goes without a mask, as in SDPA. Keys and values have as many heads as the queries."""
    scale = scale if scale is not None else query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale
    if is_causal:
        if mask is not None:
            raise ValueError("attention: a mask or is_causal, not both")
        mask = torch.ones(query.size(-2), key.size(-2), dtype=torch.bool, device=query.device).tril()
    if mask is not None:
        scores = scores.masked_fill(mask.logical_not(), torch.finfo(scores.dtype).min) \
            if mask.dtype == torch.bool else scores + mask
    probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    return torch.matmul(dropout(probs, p), value)
