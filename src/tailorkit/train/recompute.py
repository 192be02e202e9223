"""Activation checkpointing (`train.activation_checkpointing`): a checkpointed block keeps
only its inputs in the forward and runs again in the backward to get what its gradients need,
trading one more forward of the block for its activations (Chen et al. 2016, "Training Deep
Nets with Sublinear Memory Cost").

torch.utils.checkpoint's non-reentrant form does the work. It replays the block with the random
state of the first pass (dropout draws the same mask), so a checkpointed run trains the same
weights and resumes exactly. It works on any block list a ModelHandle knows (BERT layers,
Llama decoder layers, MobileNet stages), with frozen, LoRA or 4-bit weights inside.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.utils.checkpoint import checkpoint

from tailorkit.errors import TailorError
from tailorkit.models.handle import ModelHandle


def chosen_blocks(num_blocks: int, setting: bool | int) -> list[int]:
    """true: every block; N: blocks 0, N, 2N, ... ; false: none."""
    if setting is False:
        return []
    every = 1 if setting is True else int(setting)
    return list(range(0, num_blocks, every))


@contextmanager
def activation_checkpointing(handle: ModelHandle, setting: bool | int) -> Iterator[int]:
    """Inside, the chosen blocks recompute in the backward; yields how many. The model is
    unchanged outside (its state dict, its copies and its saved files never see the wrapper)."""
    blocks = handle.blocks if setting is not False else []
    chosen = [blocks[i] for i in chosen_blocks(len(blocks), setting)]
    for block in chosen:
        block.forward = _recomputed(block)  # an instance attribute shadows the class's
    try:
        yield len(chosen)
    finally:
        for block in chosen:
            del block.forward


def _recomputed(block: torch.nn.Module):
    own = vars(block).get("forward")  # a wrapper already on the block (accelerate's hooks)

    def run(*args, **kwargs):
        # else the class's forward at call time: models/first_token.py swaps the class
        forward = own if own is not None else type(block).forward.__get__(block)
        if not torch.is_grad_enabled():  # evaluation: nothing to save, nothing to recompute
            return forward(*args, **kwargs)
        if kwargs.get("past_key_values") is not None:
            # The replay would append its keys and values to the cache a second time.
            raise TailorError("train.activation_checkpointing: a block reads a key/value cache "
                              "(prefix tuning), which a recomputed block would extend twice; turn "
                              "one of them off")
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return run
