"""Structured pruning of attention heads: the query, key and value projections and the output
projection lose the pruned heads' rows and columns. With grouped-query attention (Llama) a
key/value head goes together with the query heads that read it.

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

from dataclasses import dataclass

import torch
from pydantic import Field
from torch import nn

from tailorkit.compress.base import Step, register
from tailorkit.config.compress import StepConfig
from tailorkit.errors import TailorError
from tailorkit.models.handle import ModelHandle
from tailorkit.models.structure import shrink_linear


class PruneHeadsConfig(StepConfig):
    amount: float = Field(0.25, gt=0.0, lt=1.0, description="Fraction of each layer's attention heads "
                                                            "removed (the same in every layer).")


@dataclass
class Attention:
    """A block's attention projections, in the terms pruning needs."""

    q: nn.Linear
    k: nn.Linear
    v: nn.Linear
    out: nn.Linear
    head_size: int
    group: int  # query heads per key/value head (grouped-query attention; 1 for BERT)


def attention_of(block: nn.Module, config) -> Attention:
    """A BERT-style block (query, key, value; attention.output.dense) or a Llama-style one
    (q_proj, k_proj, v_proj, o_proj; grouped-query heads)."""
    def has(module: nn.Module, *names: str) -> bool:
        return all(isinstance(getattr(module, n, None), nn.Linear) for n in names)

    for m in block.modules():
        if has(m, "q_proj", "k_proj", "v_proj", "o_proj"):
            return Attention(m.q_proj, m.k_proj, m.v_proj, m.o_proj, m.head_dim, m.num_key_value_groups)
        if has(m, "query", "key", "value"):
            out = block.get_submodule("attention.output") if hasattr(block, "attention") else None
            if isinstance(getattr(out, "dense", None), nn.Linear):
                return Attention(m.query, m.key, m.value, out.dense,
                                 config.hidden_size // config.num_attention_heads, 1)
    raise TailorError(f"prune_heads: {type(block).__name__} has no attention this step knows (BERT's "
                      "query/key/value or Llama's q_proj/k_proj/v_proj/o_proj)")


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
        blocks = handle.blocks
        before = after = 0
        for block in blocks:
            a = attention_of(block, handle.model.config)
            size, groups = a.head_size, a.k.out_features // a.head_size
            keep = groups - int(round(self.config.amount * groups))
            if keep < 1:
                raise TailorError(f"prune_heads.amount: {self.config.amount} leaves no head of {groups}")
            # a key/value head and the query heads that read it go together
            value = a.v.weight.view(groups, -1).norm(dim=1)
            written = a.out.weight.view(a.out.out_features, groups, a.group * size).transpose(0, 1)
            kept = (value * written.flatten(1).norm(dim=1)).topk(keep).indices.sort().values
            kv_rows = (kept[:, None] * size + torch.arange(size)).flatten()
            q_rows = (kept[:, None] * a.group * size + torch.arange(a.group * size)).flatten()
            for layer, rows in ((a.q, q_rows), (a.k, kv_rows), (a.v, kv_rows)):
                shrink_linear(layer, rows, dim=0)
            shrink_linear(a.out, q_rows, dim=1)
            before, after = before + groups * a.group, after + keep * a.group
        handle.reshaped = True
        return {"amount": self.config.amount, "heads": {"before": before, "after": after},
                "head_size": size}
