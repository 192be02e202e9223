"""Depth pruning: keep some of the transformer blocks and drop the rest.

The model keeps `keep` of its n blocks, so every input passes through fewer layers: inference
time and the file shrink by about (n - keep) / n of the blocks' share. `bottom` keeps the lowest
blocks (dropping the top ones costs least before recovery; Sajjad et al. 2023, "On the effect of
dropping layers of pre-trained transformer models"); `alternate` keeps every other one, the
initialisation DistilBERT's student starts from (Sanh et al. 2019). The result is a plain Hugging
Face model with a smaller `num_hidden_layers`. Accuracy drops until it recovers: fine-tune the
folder again, best with the source run as teacher (`methods: [distill: {teacher: RUN}]`,
docs/compression.md).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import nn

from tailorkit.compress.base import Step, register
from tailorkit.config.compress import StepConfig
from tailorkit.errors import TailorError
from tailorkit.models.handle import ModelHandle


class DropBlocksConfig(StepConfig):
    keep: int = Field(ge=1, description="Number of transformer blocks kept.")
    which: Literal["bottom", "alternate"] = Field("bottom", description="bottom: the lowest `keep` "
                                                  "blocks; alternate: every other block from the bottom.")


def kept_blocks(n: int, keep: int, which: str) -> list[int]:
    if which == "bottom":
        return list(range(keep))
    stride = n / keep
    return [int(i * stride) for i in range(keep)]


@register
class DropBlocks(Step):
    name = "drop_blocks"
    Config = DropBlocksConfig
    summary = "depth pruning: keep `keep` transformer blocks (bottom or alternate), drop the rest"

    def check_recipe(self, recipe, task, where: str) -> None:
        if task.modality != "text":
            raise ValueError(f"{where}.drop_blocks: drops transformer blocks; task {task.name} has none")

    def apply(self, handle: ModelHandle, calibration=None) -> dict:
        path = handle.blocks_prefix.rstrip(".")
        blocks = handle.model.get_submodule(path)
        n, c = len(blocks), self.config
        if c.keep >= n:
            raise TailorError(f"drop_blocks.keep: the model has {n} blocks; keep fewer than {n}")
        kept = kept_blocks(n, c.keep, c.which)
        parent, _, attr = path.rpartition(".")
        setattr(handle.model.get_submodule(parent) if parent else handle.model, attr,
                nn.ModuleList([blocks[i] for i in kept]))
        for new_index, block in enumerate(handle.model.get_submodule(path)):
            for module in block.modules():  # decoder attention indexes its KV cache by layer
                if hasattr(module, "layer_idx"):
                    module.layer_idx = new_index
        config = handle.model.config
        config.num_hidden_layers = c.keep
        if isinstance(getattr(config, "layer_types", None), list):
            config.layer_types = [config.layer_types[i] for i in kept]
        handle.num_blocks = c.keep
        return {"blocks": {"before": n, "after": c.keep, "kept": kept}}
