"""Post-training static int8, calibrated on training batches: CNNs here, text models' linear
layers in compress/static_linear.py.

Unlike dynamic int8, activations are int8 too, with scales fixed in advance from the ranges
seen on `calibration_batches` batches of training examples (PyTorch's x86 defaults: histogram
observers for activations, per-channel min/max for weights). For CNNs conv -> batch norm ->
ReLU are fused into one int8 op first. This is PyTorch's FX graph mode quantisation
(`torch.ao.quantization.quantize_fx`), the path PyTorch documents for CNNs. It traces the
model, so it serves models whose forward traces: tailorkit's MobileNetV2.

Saved as `model_int8.safetensors`: every int8 tensor as its integers with its scales and zero
points, the activation scales, and the fp32 rest; `quantization.json` names the mode, the
architecture and the classes. Loading builds the float architecture, traces and converts it
the same way, and puts the stored numbers back.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from pydantic import Field
from safetensors.torch import load_file, save_file
from torch import nn

from tailorkit.compress.base import Step, register
from tailorkit.compress.int8_state import fill_int8_state, int8_tensors
from tailorkit.compress.quantize import quantized_layers
from tailorkit.compress.static_linear import (
    calibrate_text,
    linear_names,
    load_static_text,
    save_static_text,
    static_int8,
)
from tailorkit.config.compress import StepConfig
from tailorkit.errors import TailorError
from tailorkit.models.handle import ModelHandle
from tailorkit.models.mobilenet_v2 import MobileNetV2
from tailorkit.models.vision import vision_handle

WEIGHTS = "model_int8.safetensors"
SPEC = "quantization.json"
BATCH = 32


class QuantizeStaticConfig(StepConfig):
    calibration_batches: int = Field(16, ge=1, description=f"Batches of {BATCH} training examples whose "
                                                           "activation ranges fix the int8 scales.")
    keep_fp32: list[str] = Field([], description="Text models: linear layers left in fp32, by a part of "
                                                 "their name (as quantize.keep_fp32).")


def _traced_int8(model: nn.Module, batches) -> nn.Module:
    """`model` fused, observed on `batches` (pixel tensors) and converted to int8."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    with warnings.catch_warnings():  # torch.ao's deprecation notices
        warnings.simplefilter("ignore")
        batches = iter(batches)
        first = next(batches)
        prepared = prepare_fx(model.eval(), get_default_qconfig_mapping("x86"), example_inputs=(first,))
        with torch.inference_mode():
            for pixels in [first, *batches]:
                prepared(pixels)
        return convert_fx(prepared)


def _calibration(data, batches: int):
    """Training images as the model will see them served: transformed, but not mixup/CutMix blends."""
    if getattr(data, "mix", None) is not None:
        data = data.without_mix()
    n = min(len(data), batches * BATCH)
    for start in range(0, n, BATCH):
        yield data.collate(list(range(start, min(n, start + BATCH))))["pixel_values"]


@register
class QuantizeStatic(Step):
    name = "quantize_static"
    Config = QuantizeStaticConfig
    summary = "post-training static int8 (weights and activations), calibrated on training batches"
    saves_model = True

    def check_recipe(self, recipe, task, where: str) -> None:
        if task.modality == "image" and self.config.keep_fp32:
            raise ValueError(f"{where}.quantize_static.keep_fp32: CNNs are quantised whole; keep_fp32 is "
                             "for text models")

    def apply(self, handle: ModelHandle, calibration=None) -> dict:
        if calibration is None:
            raise TailorError("quantize_static: needs training examples to calibrate on")
        if handle.modality == "text":
            layers = linear_names(handle.model, self.config.keep_fp32)
            n = min(len(calibration), self.config.calibration_batches * BATCH)
            handle.model = static_int8(handle.model, layers,
                                       lambda: calibrate_text(handle, calibration, n, BATCH))
            return {"mode": "static_int8", "calibration_examples": n, "quantized_layers": len(layers),
                    "kept_fp32": self.config.keep_fp32}
        if not isinstance(handle.model, MobileNetV2):
            raise TailorError("quantize_static: the image model is not tailorkit's MobileNetV2; FX static "
                              "quantisation is only set up for it")
        images = min(len(calibration), self.config.calibration_batches * BATCH)
        num_classes, hidden = handle.model.num_classes, handle.model.hidden_widths
        handle.model = _traced_int8(handle.model, _calibration(calibration, self.config.calibration_batches))
        handle.model.num_classes, handle.model.hidden_widths = num_classes, hidden  # for save_model
        handle.save_fn = None
        return {"mode": "static_int8", "calibration_images": images,
                "quantized_layers": len(quantized_layers(handle.model))}

    def save_model(self, handle: ModelHandle, directory: Path) -> None:
        if handle.modality == "text":
            save_static_text(handle, directory)
        else:
            save_int8(handle.model, directory)

    def load_model(self, task, recipe, directory: Path, labels: list[str]) -> ModelHandle:
        if task.modality == "text":
            return load_static_text(task, recipe, directory)
        return load_int8(directory)


def save_int8(model: nn.Module, directory: Path) -> None:
    """An int8 MobileNetV2 (FX-converted; `num_classes`, `hidden_widths` set on it) as
    safetensors: each int8 tensor as integers, scales and zero points."""
    tensors, per_channel = int8_tensors(model)
    save_file(tensors, str(directory / WEIGHTS))
    (directory / SPEC).write_text(json.dumps({"mode": "static_int8", "architecture": "mobilenet_v2",
                                              "num_classes": model.num_classes, "hidden": model.hidden_widths,
                                              "per_channel_axis": per_channel}))


def load_int8(directory: Path) -> ModelHandle:
    """What save_int8 wrote: the float architecture traced and converted as before (convolutions
    do not care about the image size), then the stored numbers put back."""
    spec = json.loads((directory / SPEC).read_text())
    float_model = MobileNetV2(num_classes=spec["num_classes"], hidden=spec.get("hidden"))
    model = _traced_int8(float_model, [torch.zeros(1, 3, 32, 32)])
    fill_int8_state(model, load_file(str(directory / WEIGHTS)), spec["per_channel_axis"], directory / WEIGHTS)
    model.num_classes, model.hidden_widths = spec["num_classes"], spec.get("hidden")
    handle = vision_handle(float_model)
    handle.model, handle.save_fn = model.eval(), None
    return handle
