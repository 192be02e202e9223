"""A model converted to int8 by torch.ao (FX or eager) as plain tensors, and back.

safetensors holds no quantised tensors, so each int8 tensor is stored as its integers with its
scale(s) and zero point(s); a quantised Linear's packed (weight, bias) is unpacked the same way.
Loading converts the float architecture the same way first, so the state it fills in carries
the modules' own format versions.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tailorkit.errors import TailorError


def int8_tensors(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """A converted model's state as plain tensors (each int8 tensor as integers, scales and zero
    points), and the axis of each per-channel one."""
    tensors, per_channel = {}, {}
    for key, value in model.state_dict().items():
        if key.endswith("._packed_params.dtype"):
            continue
        if key.endswith("._packed_params._packed_params"):  # a quantized Linear: (weight, bias)
            prefix = key.removesuffix("._packed_params._packed_params")
            weight, bias = value
            _put(tensors, per_channel, f"{prefix}.weight", weight)
            if bias is not None:
                tensors[f"{prefix}.bias"] = bias.detach().contiguous()
        elif isinstance(value, torch.Tensor) and value.is_quantized:
            _put(tensors, per_channel, key, value)
        else:
            tensors[key] = value.detach().contiguous()
    return tensors, per_channel


def fill_int8_state(model: nn.Module, stored: dict, per_channel: dict, path: Path) -> None:
    """Put what `int8_tensors` gave back into a model converted the same way."""
    state = model.state_dict()  # filled in place: it carries the modules' format versions
    for key, value in list(state.items()):
        if key.endswith("._packed_params.dtype"):
            continue
        if key.endswith("._packed_params._packed_params"):
            prefix = key.removesuffix("._packed_params._packed_params")
            state[key] = (_get(stored, per_channel, f"{prefix}.weight"), stored.get(f"{prefix}.bias"))
        elif isinstance(value, torch.Tensor) and value.is_quantized:
            state[key] = _get(stored, per_channel, key)
        elif key in stored:
            state[key] = stored[key]
        else:
            raise TailorError(f"{path}: does not fit the model (no {key})")
    model.load_state_dict(state)


def _put(tensors: dict, per_channel: dict, name: str, q: torch.Tensor) -> None:
    """An int8 tensor as its integers plus its scale(s) and zero point(s)."""
    tensors[f"{name}.int8"] = q.int_repr().contiguous()
    if q.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        tensors[f"{name}.scale"] = q.q_per_channel_scales().double().contiguous()
        tensors[f"{name}.zero_point"] = q.q_per_channel_zero_points().contiguous()
        per_channel[name] = q.q_per_channel_axis()
    else:
        tensors[f"{name}.scale"] = torch.tensor([q.q_scale()], dtype=torch.float64)
        tensors[f"{name}.zero_point"] = torch.tensor([q.q_zero_point()])


def _get(stored: dict, per_channel: dict, name: str) -> torch.Tensor:
    ints, scale, zero = stored[f"{name}.int8"], stored[f"{name}.scale"], stored[f"{name}.zero_point"]
    if name in per_channel:
        return torch._make_per_channel_quantized_tensor(ints, scale, zero, per_channel[name])
    return torch._make_per_tensor_quantized_tensor(ints, float(scale[0]), int(zero[0]))
