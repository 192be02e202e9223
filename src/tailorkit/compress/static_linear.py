"""Static int8 for the linear layers of text models, calibrated on training batches.

Dynamic int8 (compress/quantize.py) measures each input's range as it comes; here the ranges
are fixed in advance from what `calibration_batches` training batches produced, so nothing is
measured at run time. Each linear layer becomes quantise (at its calibrated scale) -> int8 linear
-> dequantise, with PyTorch's x86 defaults: histogram observers for the inputs (the range that
minimises the rounding error, not the raw min/max), per-channel weights. This is PyTorch's
eager mode (`QuantWrapper`, `prepare`, `convert`): Hugging Face models do not trace whole for FX,
and a linear layer needs no fusing.

The stored file is the converted model's state: int8 tensors as integers with scales and zero
points (compress/int8_state.py), the fp32 rest beside them.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tailorkit.compress.int8_state import fill_int8_state, int8_tensors
from tailorkit.compress.quantize import float_architecture, untied
from tailorkit.data.batching import eval_batches
from tailorkit.models.handle import ModelHandle
from tailorkit.models.structure import write_structure

WEIGHTS = "model_int8.safetensors"
SPEC = "quantization.json"


def wrap_linears(model: nn.Module, names: list[str]) -> None:
    """Each named linear layer inside quantise/dequantise stubs, observed with x86 defaults."""
    from torch.ao.quantization import QuantWrapper, get_default_qconfig

    for name in names:
        parent, _, child = name.rpartition(".")
        wrapper = QuantWrapper(model.get_submodule(name))
        wrapper.qconfig = get_default_qconfig("x86")
        setattr(model.get_submodule(parent) if parent else model, child, wrapper)


def static_int8(model: nn.Module, names: list[str], forward_batches) -> nn.Module:
    """`model` with the named linear layers as calibrated static int8: `forward_batches()`
    runs the calibration batches through the model being observed."""
    from torch.ao.quantization import convert, prepare

    with warnings.catch_warnings():  # torch.ao's deprecation notices; empty observers on reload
        warnings.simplefilter("ignore")
        wrap_linears(model, names)
        prepare(model.eval(), inplace=True)
        with torch.inference_mode():
            forward_batches()
        return convert(model, inplace=True)


def calibrate_text(handle: ModelHandle, data, n: int, size: int) -> None:
    """Run the first `n` training examples through the model, `size` at a time."""
    for group in eval_batches(data.lengths[:n], size):
        handle.forward(data.collate(group))


def linear_names(model: nn.Module, keep_fp32: list[str]) -> list[str]:
    return [n for n, m in model.named_modules()
            if type(m) is nn.Linear and not set(n.split(".")) & set(keep_fp32)]


def save_static_text(handle: ModelHandle, directory: Path) -> None:
    from torch.ao.quantization import QuantWrapper

    layers = [n for n, m in handle.model.named_modules() if isinstance(m, QuantWrapper)]
    tensors, per_channel = int8_tensors(handle.model)
    save_file(untied(tensors), str(directory / WEIGHTS))
    handle.model.config.save_pretrained(directory)
    if handle.reshaped:
        write_structure(handle.model, directory)
    (directory / SPEC).write_text(json.dumps({"mode": "static_int8", "layers": layers,
                                              "per_channel_axis": per_channel}))
    if handle.tokenizer is not None:
        handle.tokenizer.save_pretrained(directory)


def load_static_text(task, recipe, directory: Path) -> ModelHandle:
    """The float architecture wrapped and converted as before, then the stored numbers put back."""
    spec = json.loads((directory / SPEC).read_text())
    handle = float_architecture(task, recipe, directory)
    handle.model = static_int8(handle.model, spec["layers"], lambda: None)
    fill_int8_state(handle.model, load_file(str(directory / WEIGHTS)), spec["per_channel_axis"],
                    directory / WEIGHTS)
    return handle
