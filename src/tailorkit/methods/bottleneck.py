"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2021), written here: PEFT has none.

An adapter is a small residual MLP on a sublayer's output h:
    h + up(act(down(h)))      down: d -> m, up: m -> d, m = d / reduction
with `up` initialised at zero, so before training the model is exactly the
base model. Houlsby places one after the attention output projection and one
after the feed-forward output projection of every block; Pfeiffer only after
the feed-forward one. Both sit inside the block's residual connection and
before its layer norm, as in the papers.

They cannot be merged: the activation makes the adapter nonlinear in h.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from safetensors.torch import load_file, save_file
from torch import nn

from tailorkit.errors import TailorError
from tailorkit.methods.base import Method, MethodConfig, chosen_before, register
from tailorkit.models.handle import ModelHandle

# Sublayer output projections, relative to a block, for the families we know.
ATTENTION_OUTPUT = ("attention.output.dense", "self_attn.o_proj", "attention.out_lin", "attn.c_proj")
FFN_OUTPUT = ("output.dense", "mlp.down_proj", "ffn.lin2", "mlp.c_proj")
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "swish": nn.SiLU}


class BottleneckConfig(MethodConfig):
    placement: Literal["houlsby", "pfeiffer"] = Field(
        "pfeiffer", description="houlsby: after attention and FFN; pfeiffer: after the FFN only.")
    reduction: int = Field(16, ge=1, description="Bottleneck size = hidden size / reduction.")
    size: int | None = Field(None, ge=1, description="Bottleneck size; overrides reduction.")
    activation: Literal["relu", "gelu", "tanh", "swish"] = "relu"


class Bottleneck(nn.Module):
    def __init__(self, dim: int, size: int, activation: str) -> None:
        super().__init__()
        self.down = nn.Linear(dim, size)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(size, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))


class AdaptedLinear(nn.Module):
    """A frozen projection followed by its adapter."""

    def __init__(self, base_layer: nn.Linear, adapter: Bottleneck) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.base_layer(x))


def _find(block: nn.Module, candidates: tuple[str, ...], where: str) -> str:
    names = {n for n, _ in block.named_modules()}
    for name in candidates:
        if name in names and isinstance(block.get_submodule(name), nn.Linear):
            return name
    raise TailorError(f"bottleneck: no {where} projection in {type(block).__name__} "
                      f"(looked for {', '.join(candidates)})")


@register
class BottleneckAdapter(Method):
    name = "bottleneck"
    Config = BottleneckConfig
    summary = "bottleneck adapters, Houlsby or Pfeiffer placement; zero-init; not mergeable"
    default_lr = 1e-3  # sources: methods.base.default_lr_of
    adapter = True
    modalities = frozenset({"text"})
    needs = "it sits after a transformer block's attention and feed-forward outputs"

    def apply(self, handle: ModelHandle) -> None:
        keep = chosen_before(handle)
        c = self.config
        places = (ATTENTION_OUTPUT, FFN_OUTPUT) if c.placement == "houlsby" else (FFN_OUTPUT,)
        blocks = handle.blocks
        adapters = []
        for block in blocks:
            for candidates in places:
                path = _find(block, candidates, "attention" if candidates is ATTENTION_OUTPUT else "FFN")
                parent_name, _, attr = path.rpartition(".")
                parent = block.get_submodule(parent_name) if parent_name else block
                linear = getattr(parent, attr)
                size = c.size or max(1, linear.out_features // c.reduction)
                adapter = Bottleneck(linear.out_features, size, c.activation).to(linear.weight.dtype)
                setattr(parent, attr, AdaptedLinear(linear, adapter))
                adapters.append(adapter)
        train = {id(p) for a in adapters for p in a.parameters()}
        if keep:
            train |= {id(p) for p in keep}
        else:
            heads = [handle.model.get_submodule(n) for n in handle.head_modules]
            train |= {id(p) for h in heads for p in h.parameters()}
        for p in handle.model.parameters():
            p.requires_grad_(id(p) in train)

    def save_adapter(self, handle: ModelHandle, directory: Path) -> None:
        state = {n: p.detach().contiguous() for n, p in handle.model.named_parameters()
                 if p.requires_grad or ".adapter." in n}
        save_file(state, str(directory / "adapter_model.safetensors"))
        config = {"tailorkit_method": self.name, **self.config.model_dump(),
                  "base_model_name_or_path": handle.model.config.name_or_path}
        (directory / "adapter_config.json").write_text(json.dumps(config, indent=2))

    def load_adapter(self, handle: ModelHandle, directory: Path) -> None:
        state = load_file(str(directory / "adapter_model.safetensors"))
        unknown = set(state) - set(handle.model.state_dict())
        if unknown:
            raise TailorError(f"{directory}: adapter tensors the model lacks: {sorted(unknown)[:3]}")
        handle.model.load_state_dict(state, strict=False)

    def merge(self, handle: ModelHandle) -> None:
        raise TailorError("bottleneck adapters cannot be merged: the activation between down and up "
                          "projection makes them nonlinear, so no weight change equals them. Use the "
                          "run itself (tailor predict, eval or serve), or export it --format onnx")
