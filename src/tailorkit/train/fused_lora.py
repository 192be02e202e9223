"""A LoRA linear layer whose training step costs little more than its frozen base's.

PEFT computes y = W x + b + s * B(A(dropout(x))) as six autograd nodes. Dropout writes a dropped
copy of the input (as large as the layer's input) and keeps it, with a mask, for the backward;
the scaling and the sum each write another tensor as large as the output. Here one autograd
function does the same arithmetic:
- forward: y = x W^T + b, then y += s * (d(x) A^T) B^T in place (one addmm), where d(x) is the
  dropped input, made and freed inside the function;
- it keeps x (which the graph holds anyway), the r-wide projection h = d(x) A^T and the mask as
  bits of one byte, not the dropped copy;
- backward: dL/dB = s gy^T h, dL/dA = (s gy B)^T d(x) with d(x) rebuilt from the mask,
  dL/dx = gy W + d(s gy B A) added in place.
The trained tensors are PEFT's own `lora_A` / `lora_B` weights, so the adapter saves and loads
as a plain PEFT folder. Layers this path does not cover (DoRA, a 4-bit base, several active
adapters, merged weights, tensors off the CPU, whose autocast this function does not follow) run
PEFT's forward unchanged.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from tailorkit.train.fast_dropout import applies, keep_mask, scaled_mask

# _SKINNY: the LoRA products have r (8) on one side. Written with r as the rows of the result
# (A x^T rather than x A^T, h^T gy rather than gy^T h) they ran 2-7x faster on this CPU's BLAS:
# for a 2,048 x 1,536 gy, gy^T h took 6.7 ms and (h^T gy)^T 1.0 ms (docs/methods.md).


class _LoraLinear(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")
    def forward(ctx, x, weight, bias, a, b, scaling: float, p: float):
        mask, keep_scale, dropped = None, 1.0, x
        if p > 0:  # train/fast_dropout.py's draw
            mask, keep_scale = keep_mask(x, p)
            dropped = x * scaled_mask(mask, x.dtype, keep_scale)
        y = F.linear(x, weight, bias)
        # h^T = A d(x)^T, r x tokens: the product with r as its rows (see _SKINNY)
        h_t = a @ dropped.reshape(-1, x.size(-1)).t()
        flat = y.view(-1, y.size(-1))
        flat.addmm_(h_t.t().to(flat.dtype), b.t().to(flat.dtype), alpha=scaling)
        ctx.save_for_backward(x, mask, h_t, weight, a, b)
        ctx.scaling, ctx.keep_scale = scaling, keep_scale
        return y

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, gy):
        x, mask, h_t, weight, a, b = ctx.saved_tensors
        s, keep_scale = ctx.scaling, ctx.keep_scale
        gy2 = gy.reshape(-1, gy.size(-1))
        gh_t = (b.t().to(gy2.dtype) @ gy2.t()) * s  # (gy B)^T, r x tokens (see _SKINNY)
        grad_b = (h_t.to(gy2.dtype) @ gy2).t().contiguous() * s
        dropped = x if mask is None else x * scaled_mask(mask, x.dtype, keep_scale)
        grad_a = gh_t @ dropped.reshape(-1, x.size(-1)).to(gh_t.dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            back = gh_t.t() @ a.to(gh_t.dtype)
            if mask is not None:
                back = back * scaled_mask(mask.view(back.shape), back.dtype, keep_scale)
            grad_x = (gy2 @ weight.to(gy2.dtype)).add_(back.to(gy2.dtype)).view(x.shape)
        return grad_x, None, None, grad_a, grad_b, None, None


def fused_lora(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, a: torch.Tensor,
               b: torch.Tensor, scaling: float, p: float) -> torch.Tensor:
    """y = x W^T + bias + scaling * dropout_p(x) A^T B^T, the base (weight, bias) frozen."""
    return _LoraLinear.apply(x, weight, bias, a, b, scaling, p)


def fused_forward(layer, x: torch.Tensor, training: bool | None = None) -> torch.Tensor | None:
    """The fused path for PEFT's `lora.Linear` when it applies, else None. `training` (default:
    whether autograd records) picks it; a backward rebuilding a training output asks for it
    under no_grad (train/lean_activations.py)."""
    base = layer.base_layer
    training = torch.is_grad_enabled() if training is None else training
    if (not training  # inference: PEFT's own forward, to the bit
            or x.device.type != "cpu" or layer.disable_adapters or layer.merged
            or len(layer.active_adapters) != 1
            or type(base) is not torch.nn.Linear or getattr(layer, "fan_in_fan_out", False)
            or base.weight.requires_grad or (base.bias is not None and base.bias.requires_grad)):
        return None
    name = layer.active_adapters[0]
    if name not in layer.lora_A or name in layer.lora_variant:
        return None
    dropout = layer.lora_dropout[name]
    p = dropout.p if isinstance(dropout, torch.nn.Dropout) and dropout.training else 0.0
    if p > 0 and not applies(x, p):  # a rate the cheaper draw cannot express
        return None
    return fused_lora(x, base.weight, base.bias, layer.lora_A[name].weight, layer.lora_B[name].weight,
                      layer.scaling[name], p)


def use_fused_lora(model: torch.nn.Module) -> int:
    """Every plain PEFT LoRA linear layer of `model` takes the fused path; returns how many."""
    from peft.tuners.lora.layer import Linear

    layers = [m for m in model.modules() if type(m) is Linear]
    for layer in layers:
        layer.__class__ = fused_class()
    return len(layers)


@functools.cache
def fused_class() -> type:
    """PEFT's lora.Linear (same state, same saving) with the fused training path; made on first
    use, since importing PEFT is slow."""
    from peft.tuners.lora.layer import Linear

    class FusedLoraLinear(Linear):
        def training_output(self, x: torch.Tensor) -> torch.Tensor:
            """What forward(x) returns while training, computed without autograd."""
            y = fused_forward(self, x, training=True)
            return super().forward(x) if y is None else y

        def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            if not args and not kwargs:
                y = fused_forward(self, x)
                if y is not None:
                    return y
            return super().forward(x, *args, **kwargs)

    return FusedLoraLinear
