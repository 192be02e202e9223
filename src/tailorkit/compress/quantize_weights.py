"""Weight-only int8 and int4 quantisation of the linear layers, for fast CPU generation.

Only the weights are rounded; activations stay floating point, so nothing like the outliers
that break dynamic int8 on a causal LM's `down_proj` can hurt (docs/compression.md). The
layers run PyTorch's weight-only CPU kernels, which read the small integers and multiply
in bf16:
- int8: one scale per output channel, symmetric (`torch._weight_int8pack_mm`);
- int4: asymmetric, one scale and offset per group of `group_size` inputs
  (`torch.ops.aten._weight_int4pack_mm_for_cpu`, the layout of GPTQ/AWQ-style int4).
Measured here, both kernels were 2-10x slower than fp32 matmuls with fp32 inputs and 2-7x faster
with bf16 inputs at one token per step, hence bf16 inside the layer (its output is cast back).

A layer whose shape a kernel does not take (int8: inputs a multiple of 16; int4: outputs a
multiple of 16 and inputs of the group size) stays fp32 and is listed in the summary: the
kernels return garbage, or crash, on other shapes. Every quantised layer is also checked
against its dequantised weights on a random input once, when it is made.

The integers, scales and offsets are buffers of `WeightOnlyLinear`, so the model's state dict
is the saved file (`model/model_int.safetensors`); int4 codes are stored two per byte and
repacked into the kernel's layout at load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from safetensors.torch import load_file, save_file
from torch import nn

from tailorkit.compress.base import Step, register
from tailorkit.compress.quantize import float_architecture, untied
from tailorkit.config.compress import StepConfig
from tailorkit.errors import TailorError
from tailorkit.models.handle import ModelHandle
from tailorkit.models.structure import write_structure

WEIGHTS = "model_int.safetensors"
SPEC = "weight_quantization.json"


class QuantizeWeightsConfig(StepConfig):
    bits: Literal[8, 4] = Field(8, description="8: int8 weights, one scale per output channel; 4: int4 "
                                               "weights, a scale and offset per group of inputs.")
    group_size: Literal[32, 64, 128, 256] = Field(64, description="int4: inputs sharing one scale and "
                                                                  "offset (smaller: closer to fp32, larger "
                                                                  "file).")
    keep_fp32: list[str] = Field([], description="Linear layers left in fp32: those whose name has one of "
                                                 "these parts, e.g. [lm_head].")


class WeightOnlyLinear(nn.Module):
    """y = x W^T + b with W held as int8 or int4 codes; the matmul runs in bf16."""

    def __init__(self, in_features: int, out_features: int, bits: int, group_size: int, bias: bool) -> None:
        super().__init__()
        self.in_features, self.out_features, self.bits, self.group_size = (
            in_features, out_features, bits, group_size)
        if bits == 8:
            self.register_buffer("codes", torch.zeros(out_features, in_features, dtype=torch.int8))
            self.register_buffer("scales", torch.ones(out_features, dtype=torch.bfloat16))
        else:
            groups = in_features // group_size
            self.register_buffer("codes", torch.zeros(out_features, in_features // 2, dtype=torch.uint8))
            self.register_buffer("scales_and_zeros",
                                 torch.zeros(groups, out_features, 2, dtype=torch.bfloat16))
            self.register_buffer("packed", torch.empty(0, dtype=torch.uint8), persistent=False)
        self.bias = nn.Parameter(torch.zeros(out_features), requires_grad=False) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int, group_size: int) -> WeightOnlyLinear:
        module = cls(linear.in_features, linear.out_features, bits, group_size, linear.bias is not None)
        weight = linear.weight.detach().float()
        if bits == 8:
            scales = (weight.abs().amax(1) / 127).clamp(min=1e-8).bfloat16()
            module.codes.copy_((weight / scales.float()[:, None]).round().clamp(-127, 127).to(torch.int8))
            module.scales.copy_(scales)
        else:
            groups = weight.view(weight.size(0), -1, group_size)
            low, high = groups.amin(-1), groups.amax(-1)
            scales = ((high - low) / 15).clamp(min=1e-8).bfloat16().float()
            codes = ((groups - low[..., None]) / scales[..., None]).round().clamp(0, 15).to(torch.uint8)
            zeros = low + 8 * scales  # the kernel computes (code - 8) * scale + zero
            module.scales_and_zeros.copy_(torch.stack([scales, zeros], -1).transpose(0, 1))
            module.codes.copy_(_pack(codes.view(weight.shape)))
        if linear.bias is not None:
            module.bias.data.copy_(linear.bias.detach())
        module.repack()
        return module

    def repack(self) -> None:
        """int4: the kernel's own layout of the codes, built from the stored ones."""
        if self.bits == 4:
            self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(_unpack(self.codes).int(), 1)

    def dequantized(self) -> torch.Tensor:
        if self.bits == 8:
            return self.codes.float() * self.scales.float()[:, None]
        scales, zeros = self.scales_and_zeros.float().transpose(0, 1).unbind(-1)
        codes = _unpack(self.codes).float().view(self.out_features, -1, self.group_size)
        return ((codes - 8) * scales[..., None] + zeros[..., None]).view(self.out_features, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        if self.bits == 8:
            y = torch._weight_int8pack_mm(flat, self.codes, self.scales)
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, self.group_size,
                                                           self.scales_and_zeros)
        y = y.to(x.dtype).view(*x.shape[:-1], self.out_features)
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}"


def _pack(codes: torch.Tensor) -> torch.Tensor:
    return (codes[:, ::2] << 4) | codes[:, 1::2]


def _unpack(packed: torch.Tensor) -> torch.Tensor:
    return torch.stack([packed >> 4, packed & 15], -1).view(packed.size(0), -1)


def fits_kernel(linear: nn.Linear, bits: int, group_size: int) -> bool:
    if bits == 8:
        return linear.in_features % 16 == 0
    return linear.out_features % 16 == 0 and linear.in_features % group_size == 0


def quantize_weights(model: nn.Module, bits: int, group_size: int, keep_fp32: list[str] | None = None,
                     only: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Swap linear layers for WeightOnlyLinear in place: all but those with a name part in
    `keep_fp32` and those the kernels cannot take, or exactly `only` (reloading a saved model).
    Returns the quantised layers and the ones left fp32 for their shape."""
    linears = {name: m for name, m in model.named_modules() if type(m) is nn.Linear}
    if only is not None:
        chosen, unfit = only, []
    else:
        wanted = [n for n in linears if not set(n.split(".")) & set(keep_fp32 or [])]
        chosen = [n for n in wanted if fits_kernel(linears[n], bits, group_size)]
        unfit = [n for n in wanted if n not in chosen]
    for name in chosen:
        parent, _, child = name.rpartition(".")
        module = WeightOnlyLinear.from_linear(linears[name], bits, group_size)
        if only is None:
            _check_kernel(module, name)
        setattr(model.get_submodule(parent) if parent else model, child, module)
    return chosen, unfit


@torch.no_grad()
def _check_kernel(module: WeightOnlyLinear, name: str) -> None:
    x = torch.randn(2, module.in_features, generator=torch.Generator().manual_seed(0))
    got = module(x)
    want = x.bfloat16().float() @ module.dequantized().t()
    if module.bias is not None:
        want = want + module.bias
    if not torch.allclose(got, want, atol=0.05 * float(want.abs().max()) + 1e-3, rtol=0.05):
        raise TailorError(f"quantize_weights: the int{module.bits} kernel gave wrong results on layer "
                          f"{name} ({module.in_features} -> {module.out_features}); keep it in fp32 with "
                          f"keep_fp32: [{name.rsplit('.', 1)[-1]}]")


@register
class QuantizeWeights(Step):
    name = "quantize_weights"
    Config = QuantizeWeightsConfig
    summary = "weight-only int8 or int4 linear layers (bf16 matmuls): causal-LM generation"
    saves_model = True

    def check_recipe(self, recipe, task, where: str) -> None:
        if task.modality != "text":
            raise ValueError(f"{where}.quantize_weights: weight-only quantisation takes the linear layers of "
                             f"Hugging Face text models; for task {task.name} use quantize_static")

    def apply(self, handle: ModelHandle, calibration=None) -> dict:
        c = self.config
        layers, unfit = quantize_weights(handle.model.eval(), c.bits, c.group_size, c.keep_fp32)
        return {"bits": c.bits, "group_size": c.group_size if c.bits == 4 else None,
                "quantized_layers": len(layers), "kept_fp32": c.keep_fp32, "unfit_kept_fp32": unfit}

    def save_model(self, handle: ModelHandle, directory: Path) -> None:
        model = handle.model
        layers = sorted(n for n, m in model.named_modules() if isinstance(m, WeightOnlyLinear))
        tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(untied(tensors), str(directory / WEIGHTS))
        model.config.save_pretrained(directory)
        if handle.reshaped:
            write_structure(model, directory)
        spec = {"bits": self.config.bits, "group_size": self.config.group_size, "layers": layers}
        (directory / SPEC).write_text(json.dumps(spec))
        if handle.tokenizer is not None:
            handle.tokenizer.save_pretrained(directory)

    def load_model(self, task, recipe, directory: Path, labels: list[str]) -> ModelHandle:
        handle = float_architecture(task, recipe, directory)
        spec = json.loads((directory / SPEC).read_text())
        quantize_weights(handle.model, spec["bits"], spec["group_size"], only=spec["layers"])
        try:
            handle.model.load_state_dict(load_file(str(directory / WEIGHTS)), strict=True)
        except RuntimeError as e:
            raise TailorError(f"{directory / WEIGHTS}: does not fit the model "
                              f"({' '.join(str(e).splitlines()[1:3])})") from e
        for module in handle.model.modules():
            if isinstance(module, WeightOnlyLinear):
                module.repack()
        return handle

