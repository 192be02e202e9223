"""ONNX export of a classifier/regressor (text encoder or image net) with dynamic batch and
sequence axes, through torch's TorchScript-based exporter (`dynamo=False`: it exports the
transformers encoders and MobileNetV2 here without onnxscript's graph rewrites), then run in
onnxruntime for the parity check."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tailorkit.export.parity import Runner
from tailorkit.models.handle import ModelHandle

MODEL_FILE = "model.onnx"
OPSET = 17


class _Logits(nn.Module):
    """The model with named tensor inputs and plain logits out (no output dataclass)."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = self.model(**dict(zip(self.names, inputs, strict=True)))
        return getattr(out, "logits", out)


def input_names(handle: ModelHandle, example: dict[str, torch.Tensor]) -> list[str]:
    order = (["pixel_values"] if handle.modality == "image"
             else ["input_ids", "attention_mask", "token_type_ids"])
    return [n for n in order if n in example]


def export_onnx(handle: ModelHandle, example: dict[str, torch.Tensor], out: Path) -> Path:
    """Write out/model.onnx from one example batch; every input's axis 0 (batch) and, for
    text, axis 1 (sequence) stay dynamic."""
    names = input_names(handle, example)
    axes = {n: ({0: "batch"} if n == "pixel_values" else {0: "batch", 1: "sequence"}) for n in names}
    path = out / MODEL_FILE
    # The wrapper in eval mode too: the exporter puts the whole module back in the wrapper's mode.
    model = _Logits(handle.model.cpu(), names).eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes
        torch.onnx.export(model, tuple(example[n] for n in names), str(path), input_names=names,
                          output_names=["logits"], dynamic_axes={**axes, "logits": {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    import onnx

    onnx.checker.check_model(str(path))
    return path


def onnx_runner(path: Path) -> Runner:
    """A batch -> logits function on an onnxruntime CPU session of `path`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]

    def run(batch: dict[str, torch.Tensor]) -> np.ndarray:
        return session.run(["logits"], {n: batch[n].numpy() for n in wanted})[0]

    return run
