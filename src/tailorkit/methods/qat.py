"""Quantization-aware training for CNNs: fine-tune with int8 simulated, save the int8 model.

Static int8 after training (`compress: [quantize_static]`) rounds weights and activations the
network never saw rounded. Here conv -> batch norm -> ReLU are fused and every weight and
activation passes through a fake quantiser during fine-tuning (Jacob et al. 2018, "Quantization
and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference"): the forward
pass rounds as int8 will, the backward pass goes straight through the rounding, so the weights
learn to sit well on the int8 grid. The run's model is then converted to real int8 and saved in
the format of `quantize_static` (compress/quantize_static.py); the test metrics are those of
the int8 model. PyTorch's FX graph mode (`prepare_qat_fx`, x86 defaults) does the work; it is
set up for tailorkit's MobileNetV2.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch

from tailorkit.compress.quantize_static import load_int8, save_int8
from tailorkit.errors import TailorError
from tailorkit.methods.base import METHODS, Method, register
from tailorkit.models.handle import ModelHandle
from tailorkit.models.mobilenet_v2 import MobileNetV2


@register
class QAT(Method):
    name = "qat"
    summary = "quantization-aware training of a CNN: int8 simulated while it fine-tunes, int8 saved"
    modalities = frozenset({"image"})
    needs = "FX quantization-aware training is set up for MobileNetV2"

    @property
    def saves_model(self) -> bool:
        return True

    def check_recipe(self, recipe, task, where: str) -> None:
        others = [METHODS[spec.name] for spec in recipe.methods if spec.name != self.name]
        if any(cls.adapter or cls.fixed_inputs for cls in others):
            raise ValueError(f"{where}: qat trains the whole network's int8 behaviour; it does not combine "
                             "with adapters or feature extraction")

    def apply(self, handle: ModelHandle) -> None:
        """The network, fused and with fake quantisers on every weight and activation."""
        from torch.ao.quantization import get_default_qat_qconfig_mapping
        from torch.ao.quantization.quantize_fx import prepare_qat_fx

        model = handle.model
        if not isinstance(model, MobileNetV2):
            raise TailorError("qat: the model is not tailorkit's MobileNetV2")
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
        from torch.ao.quantization.quantize_fx import convert_fx

        handle = setup.handle
        classes, hidden = handle.model.num_classes, handle.model.hidden_widths
        with warnings.catch_warnings():  # torch.ao's deprecation notices
            warnings.simplefilter("ignore")
            handle.model = convert_fx(copy.deepcopy(handle.model).eval())
        handle.model.num_classes, handle.model.hidden_widths = classes, hidden

    def save_model(self, handle: ModelHandle, directory: Path) -> None:
        from torch.ao.quantization import FakeQuantizeBase

        if any(isinstance(m, FakeQuantizeBase) for m in handle.model.modules()):
            raise TailorError("qat: the model is still being trained (fake-quantised); it is saved "
                              "once training converts it to int8")
        save_int8(handle.model, directory)

    def load_model(self, methods: list[Method], base: ModelHandle, directory: Path, nf4=None) -> ModelHandle:
        return load_int8(directory)
