"""Structured pruning of attention heads: the query, key and value projections and the output
projection lose the pruned heads' rows and columns.

A head h of a BERT-style layer reads the input through its slices of W_query, W_key and
W_value and writes through its columns of W_output. What it can add to the layer's output is
bounded by ||W_value[h]|| * ||W_output[:, h]|| (Frobenius norms of its slices), the importance
used here; the weakest `amount` of every layer's heads go (Michel et al. 2019, "Are Sixteen
Heads Really Better than One?", found most heads can go with little loss). The tensors, the
file and the attention time shrink. A layer then has fewer heads than the config's
`num_attention_heads`, which a Hugging Face config cannot express, so the model is saved with
`structure.json` (models/structure.py) and loads through it. Recover with a short fine-tune
from the pruned model folder, as for prune_ffn.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from tailorkit.compress.base import Step, register
from tailorkit.config.compress import StepConfig
from tailorkit.errors import TailorError
from tailorkit.models.handle import ModelHandle


class PruneHeadsConfig(StepConfig):
    amount: float = Field(0.25, gt=0.0, lt=1.0, description="Fraction of each layer's attention heads "
                                                            "removed (the same in every layer).")


def attention_of(block: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """A BERT-style block's self-attention (query, key, value) and its output projection."""
    for module in block.modules():
        if all(isinstance(getattr(module, n, None), nn.Linear) for n in ("query", "key", "value")):
            out = block.get_submodule("attention.output.dense") if hasattr(block, "attention") else None
            if isinstance(out, nn.Linear):
                return module, out
    raise TailorError(f"prune_heads: {type(block).__name__} is not a BERT-style attention block "
                      "(query, key, value and attention.output.dense)")


def _take(layer: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    weight = layer.weight.index_select(dim, index)
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=layer.bias is not None)
    new.weight.data.copy_(weight)
    if layer.bias is not None:
        new.bias.data.copy_(layer.bias if dim == 1 else layer.bias.index_select(0, index))
    return new


@register
class PruneHeads(Step):
    name = "prune_heads"
    Config = PruneHeadsConfig
    summary = "structured pruning of attention heads by weight importance; tensors and file shrink"

    def check_recipe(self, recipe, task, where: str) -> None:
        if task.modality != "text":
            raise ValueError(f"{where}.prune_heads: prunes transformer attention heads; task {task.name} "
                             "has none")

    @torch.no_grad()
    def apply(self, handle: ModelHandle, calibration=None) -> dict:
        size = getattr(handle.model.config, "hidden_size", 0) // max(
            getattr(handle.model.config, "num_attention_heads", 1), 1)
        blocks = handle.model.get_submodule(handle.blocks_prefix.rstrip("."))
        before = after = 0
        for block in blocks:
            attention, output = attention_of(block)
            heads = attention.query.out_features // size
            keep = heads - int(round(self.config.amount * heads))
            value = attention.value.weight.view(heads, size, -1)
            written = output.weight.view(output.out_features, heads, size)
            importance = value.flatten(1).norm(dim=1) * written.transpose(0, 1).flatten(1).norm(dim=1)
            kept = importance.topk(keep).indices.sort().values
            rows = (kept[:, None] * size + torch.arange(size)).flatten()
            for name in ("query", "key", "value"):
                setattr(attention, name, _take(getattr(attention, name), rows, dim=0))
            parent = block.get_submodule("attention.output")
            parent.dense = _take(output, rows, dim=1)
            before, after = before + heads, after + keep
        handle.reshaped = True
        return {"amount": self.config.amount, "heads": {"before": before, "after": after},
                "head_size": size}
