"""Post-training dynamic int8 quantisation of every linear layer.

Weights are stored as int8 with one scale per output channel (symmetric, zero point 0);
activations are quantised per batch at run time, so no calibration data is needed. The
kernels are PyTorch's (`torch.ao.quantization.quantize_dynamic`, fbgemm on x86): measured on
MiniLM-L6 here, they ran 2-3x faster than fp32 at batch 32, where torchao's int8 dynamic
configuration ran about as fast as fp32 without `torch.compile` (docs/compression.md has the
numbers and the commands). `torch.ao.quantization` is deprecated in favour of torchao, which
is why the choice is measured, not assumed.

The int8 weights, their scales and the layers that stay fp32 (embeddings, norms) are saved in
`model/model_int8.safetensors` beside the model's config and tokenizer; loading builds the
architecture from the config, quantises it the same way and puts the stored integers back.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from safetensors.torch import load_file, save_file
from torch import nn

from tailorkit.compress.base import Step, register
from tailorkit.config.compress import StepConfig
from tailorkit.errors import TailorError
from tailorkit.models.handle import ModelHandle, handle_for
from tailorkit.models.structure import apply_structure, has_structure, write_structure

WEIGHTS = "model_int8.safetensors"
SPEC = "quantization.json"


class QuantizeConfig(StepConfig):
    mode: Literal["dynamic_int8"] = Field("dynamic_int8", description="dynamic_int8: int8 weights (one "
                                                                      "scale per output channel), int8 "
                                                                      "activations computed per batch.")
    keep_fp32: list[str] = Field([], description="Linear layers left in fp32: those whose name has one of "
                                                 "these parts, e.g. [lm_head, down_proj] for Llama-style "
                                                 "causal LMs (docs/compression.md).")


def quantize_linears(model: nn.Module, keep_fp32: list[str] | None = None,
                     only: list[str] | None = None) -> nn.Module:
    """Every linear layer to dynamic int8, except those whose name has a part in `keep_fp32`;
    or exactly the layers named in `only` (reloading a saved model)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    names = only if only is not None else [
        name for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and not set(name.split(".")) & set(keep_fp32 or [])]
    with warnings.catch_warnings():  # the deprecation notice of torch.ao, once per layer
        warnings.simplefilter("ignore")
        spec = {name: per_channel_dynamic_qconfig for name in names}
        return quantize_dynamic(model, spec, dtype=torch.qint8)


def quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The int8 layers: dynamic Linear (a subclass of the static one), static Linear and Conv2d."""
    from torch.ao.nn import quantized

    kinds = quantized.Linear | quantized.Conv2d
    return {name: m for name, m in model.named_modules() if isinstance(m, kinds)}


@register
class Quantize(Step):
    name = "quantize"
    Config = QuantizeConfig
    summary = "post-training dynamic int8 quantisation of the linear layers"
    saves_model = True

    def check_recipe(self, recipe, task, where: str) -> None:
        if task.modality != "text":
            raise ValueError(f"{where}.quantize: dynamic int8 quantises the linear layers of Hugging "
                             f"Face text models; for task {task.name} use quantize_static")

    def apply(self, handle: ModelHandle, calibration=None) -> dict:
        handle.model = quantize_linears(handle.model.eval(), self.config.keep_fp32)
        return {"mode": self.config.mode, "quantized_layers": len(quantized_layers(handle.model)),
                "kept_fp32": self.config.keep_fp32}

    def save_model(self, handle: ModelHandle, directory: Path) -> None:
        save_dynamic_int8(handle, directory)

    def load_model(self, task, recipe, directory: Path, labels: list[str]) -> ModelHandle:
        handle = float_architecture(task, recipe, directory)
        handle.model = load_dynamic_int8(handle.model, directory)
        return handle


def float_architecture(task, recipe, directory: Path) -> ModelHandle:
    """The model a quantised folder was made from, built from its config (and the shapes an
    earlier step shrank) with untrained weights, and its tokenizer: what loading fills in."""
    import transformers

    trust = recipe.model.trust_remote_code
    config = transformers.AutoConfig.from_pretrained(directory, trust_remote_code=trust)
    model = getattr(transformers, task.auto_class).from_config(config, trust_remote_code=trust)
    if has_structure(directory):  # an earlier step shrank layers (attention heads)
        apply_structure(model, directory)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory, trust_remote_code=trust)
    handle = handle_for(model.eval(), tokenizer, task.output)
    handle.reshaped = has_structure(directory)
    return handle


def save_dynamic_int8(handle: ModelHandle, directory: Path) -> None:
    """The int8 weights, their scales and the fp32 rest, with the config and tokenizer."""
    model = handle.model
    quantized = quantized_layers(model)
    tensors = {}
    for name, module in quantized.items():
        weight, bias = module.weight(), module.bias()
        tensors[f"{name}.weight.int8"] = weight.int_repr().contiguous()
        tensors[f"{name}.weight.scale"] = weight.q_per_channel_scales().float().contiguous()
        if bias is not None:
            tensors[f"{name}.bias"] = bias.detach().contiguous()
    inside = tuple(f"{name}." for name in quantized)
    for name, value in model.state_dict().items():
        if not name.startswith(inside):
            tensors[name] = value.detach().contiguous()
    save_file(untied(tensors), str(directory / WEIGHTS))
    model.config.save_pretrained(directory)
    if handle.reshaped:
        write_structure(model, directory)
    (directory / SPEC).write_text(json.dumps({"mode": "dynamic_int8", "layers": sorted(quantized)}))
    if handle.tokenizer is not None:
        handle.tokenizer.save_pretrained(directory)


def load_dynamic_int8(model: nn.Module, directory: Path) -> nn.Module:
    """`model` (the float architecture) with what `save_dynamic_int8` stored in `directory`."""
    stored = load_file(str(directory / WEIGHTS))
    layers = json.loads((directory / SPEC).read_text())["layers"]
    int8 = {k: stored.pop(k) for k in [k for k in stored if k.startswith(tuple(f"{n}." for n in layers))]}
    missing, unexpected = model.load_state_dict(stored, strict=False)  # what stays fp32
    left = [k for k in missing if not k.startswith(tuple(f"{n}." for n in layers))]
    if left or unexpected:
        raise TailorError(f"{directory / WEIGHTS}: does not fit the model (missing {left[:3]}, "
                          f"unexpected {unexpected[:3]})")
    model = quantize_linears(model.eval(), only=layers)
    quantized = quantized_layers(model)
    if sorted(quantized) != layers:
        raise TailorError(f"{directory}: the stored int8 layers do not match the model's linear layers")
    for name, module in quantized.items():
        scale = int8[f"{name}.weight.scale"].double()
        weight = torch._make_per_channel_quantized_tensor(
            int8[f"{name}.weight.int8"], scale, torch.zeros_like(scale, dtype=torch.int64), 0)
        module.set_weight_bias(weight, int8.get(f"{name}.bias"))
    return model

def untied(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses two names for one storage (tied embeddings): give each its own copy."""
    seen, out = set(), {}
    for name, value in tensors.items():
        key = value.untyped_storage().data_ptr()
        out[name] = value.clone() if key in seen else value
        seen.add(key)
    return out
