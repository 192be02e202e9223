"""Quantization-aware training: fine-tune with int8 simulated, save the int8 model.

Int8 after training rounds weights and activations the network never saw rounded. Here every
weight and activation that int8 will round passes through a fake quantiser during fine-tuning
(Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference"): the forward pass rounds as int8 will, the backward pass
goes straight through the rounding, so the weights learn to sit well on the int8 grid. When
training ends the model is converted to real int8 and saved; the test metrics are those of the
int8 model.
- CNNs (tailorkit's MobileNetV2): conv -> batch norm -> ReLU fused, weights and activations
  fake-quantised by PyTorch's FX graph mode (`prepare_qat_fx`, x86 defaults); saved as static
  int8 (compress/quantize_static.py).
- Text models: every linear layer rounds as the dynamic int8 kernel does (compress/fake_int8.py:
  per-channel weights, per-batch activations); saved as dynamic int8 (compress/quantize.py).
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from pydantic import Field

from tailorkit.compress.fake_int8 import FakeInt8Linear, fake_quantize_linears, real_linears
from tailorkit.compress.quantize import load_dynamic_int8, quantize_linears, save_dynamic_int8
from tailorkit.compress.quantize_static import load_int8, save_int8
from tailorkit.errors import TailorError
from tailorkit.methods.base import METHODS, Method, MethodConfig, register
from tailorkit.models.handle import ModelHandle
from tailorkit.models.mobilenet_v2 import MobileNetV2


class QATConfig(MethodConfig):
    keep_fp32: list[str] = Field([], description="Text models: linear layers left in fp32 (not simulated, "
                                                 "not quantised): those whose name has one of these parts, "
                                                 "as in compress's quantize.keep_fp32.")


@register
class QAT(Method):
    name = "qat"
    Config = QATConfig
    summary = "quantization-aware training: int8 simulated while it fine-tunes, int8 saved"

    @property
    def saves_model(self) -> bool:
        return True

    def compress_refusal(self) -> str:
        return ("qat saves an int8 model, compressed already: no float weights are left to prune or "
                "quantise; compress a run trained without qat")

    def check_recipe(self, recipe, task, where: str) -> None:
        others = [METHODS[spec.name] for spec in recipe.methods if spec.name != self.name]
        if any(cls.adapter or cls.fixed_inputs for cls in others):
            raise ValueError(f"{where}: qat trains the whole network's int8 behaviour; it does not combine "
                             "with adapters or feature extraction")
        if task.modality == "image" and self.config.keep_fp32:
            raise ValueError(f"{where}.keep_fp32: CNNs are quantised whole; keep_fp32 is for text models")

    def apply(self, handle: ModelHandle) -> None:
        if handle.modality == "text":
            if not fake_quantize_linears(handle.model, self.config.keep_fp32):
                raise TailorError("qat: no linear layer is left to quantise; check keep_fp32")
            return
        from torch.ao.quantization import get_default_qat_qconfig_mapping
        from torch.ao.quantization.quantize_fx import prepare_qat_fx

        model = handle.model
        if not isinstance(model, MobileNetV2):
            raise TailorError("qat: the image model is not tailorkit's MobileNetV2 (the one FX "
                              "quantization-aware training is set up for)")
        classes, hidden = model.num_classes, model.hidden_widths
        with warnings.catch_warnings():  # torch.ao's deprecation notices
            warnings.simplefilter("ignore")
            handle.model = prepare_qat_fx(model.train(), get_default_qat_qconfig_mapping("x86"),
                                          example_inputs=(torch.zeros(1, 3, 32, 32),))
        handle.model.num_classes, handle.model.hidden_widths = classes, hidden
        handle.save_fn = None

    def on_fit_end(self, setup, seconds: float) -> None:
        """Training is over: the model becomes real int8, so the test split is scored, and the
        run saved, as the int8 model it is (a resumed run converts its restored model again)."""
        handle = setup.handle
        if handle.modality == "text":
            layers = real_linears(handle.model)
            handle.model = quantize_linears(handle.model.eval(), only=layers)
            return
        from torch.ao.quantization.quantize_fx import convert_fx

        classes, hidden = handle.model.num_classes, handle.model.hidden_widths
        with warnings.catch_warnings():  # torch.ao's deprecation notices
            warnings.simplefilter("ignore")
            handle.model = convert_fx(copy.deepcopy(handle.model).eval())
        handle.model.num_classes, handle.model.hidden_widths = classes, hidden

    def save_model(self, handle: ModelHandle, directory: Path) -> None:
        from torch.ao.quantization import FakeQuantizeBase

        if any(isinstance(m, FakeQuantizeBase | FakeInt8Linear) for m in handle.model.modules()):
            raise TailorError("qat: the model is still being trained (fake-quantised); it is saved "
                              "once training converts it to int8")
        if handle.modality == "text":
            save_dynamic_int8(handle, directory)
        else:
            save_int8(handle.model, directory)

    def load_model(self, methods: list[Method], base: ModelHandle, directory: Path, nf4=None) -> ModelHandle:
        if base.modality == "text":
            base.model = load_dynamic_int8(base.model, directory)
            return base
        return load_int8(directory)
