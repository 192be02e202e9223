"""Models whose layers no longer match their config: the shapes travel beside the weights.

Structured pruning can shrink layers in a way a Hugging Face config cannot say: after attention
heads go, a BERT layer has fewer heads than `num_attention_heads`, and its head size is no longer
hidden_size / heads. Such a model is saved as usual (config.json + model.safetensors) plus
`structure.json`, the shape of every linear layer. Loading builds the model from its config,
gives each linear layer its recorded shape, and loads the weights strictly.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from tailorkit.errors import TailorError

STRUCTURE = "structure.json"


def shrink_linear(layer: nn.Linear, index: torch.Tensor, dim: int) -> None:
    """Keep only the output rows (`dim` 0) or input columns (`dim` 1) of `layer` in `index`,
    in place: what structured pruning of neurons and heads does to each projection."""
    layer.weight = nn.Parameter(layer.weight.index_select(dim, index).clone())
    if dim == 0:
        layer.out_features = len(index)
        if layer.bias is not None:
            layer.bias = nn.Parameter(layer.bias.index_select(0, index).clone())
    else:
        layer.in_features = len(index)


def write_structure(model: nn.Module, directory: Path) -> None:
    """Every linear layer's (out, in) features; float and int8 layers alike."""
    shapes = {name: [m.out_features, m.in_features] for name, m in model.named_modules()
              if hasattr(m, "out_features") and hasattr(m, "in_features")}
    (directory / STRUCTURE).write_text(json.dumps(shapes))


def has_structure(directory: Path) -> bool:
    return (directory / STRUCTURE).is_file()


def apply_structure(model: nn.Module, directory: Path) -> nn.Module:
    """Give every recorded linear layer of `model` (fresh from its config) its saved shape."""
    shapes = json.loads((directory / STRUCTURE).read_text())
    for name, (out, inp) in shapes.items():
        parent, _, attr = name.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        old = getattr(holder, attr)
        if isinstance(old, nn.Linear) and (old.out_features, old.in_features) != (out, inp):
            setattr(holder, attr, nn.Linear(inp, out, bias=old.bias is not None))
    return model


def load_restructured(auto_class: str, directory: Path, trust_remote_code: bool) -> nn.Module:
    """A saved model with `structure.json`: from its config, reshaped, weights loaded strictly."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(directory, trust_remote_code=trust_remote_code)
    model = getattr(transformers, auto_class).from_config(config, trust_remote_code=trust_remote_code)
    apply_structure(model, directory)
    _, unexpected = model.load_state_dict(load_file(str(directory / "model.safetensors")), strict=False)
    if unexpected:
        raise TailorError(f"{directory}: model.safetensors does not fit structure.json ({unexpected[:3]})")
    model.tie_weights()  # a tied LM head is not stored twice
    return model.eval()
