"""What a training run's peak memory will be, before its first step, so a user sees an
out-of-memory coming (`tailor recipe validate --estimate`, and a line at the start of a run).

The estimate is the process's resident memory once the model and data are loaded (every
weight read once, as the first step will), plus what training adds on top:
- gradients of the trainable weights, and the optimiser state (AdamW: two moments per weight);
- the activations autograd keeps for the backward, *measured*: one forward of one full-length
  example with saved-tensor hooks that count every tensor the backward will need, times the
  batch size. Blocks under activation checkpointing keep only their inputs, plus one block's
  activations again while it is recomputed;
- the output layer's logits for a causal LM: rows x length x vocabulary floats a few times over
  with the plain loss, one chunk's worth with train.lm_head_chunk.
The run reports the estimate beside its measured peak (summary.json `memory`). What it cannot
see is the allocator's slack (freed memory the C heap keeps), which bench/RESULTS.md measures.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from tailorkit.config.train import TrainConfig
from tailorkit.evaluate.lm_head_loss import ChunkedLMLoss
from tailorkit.models.handle import ModelHandle
from tailorkit.runtime import resident_mb
from tailorkit.train.lean_activations import lean_activations
from tailorkit.train.recompute import chosen_blocks

MB = 2**20
OPTIMIZER_STATES = {"adamw": 2, "adam": 2, "sgd": 1}  # floats per trainable weight (SGD: momentum)
LOGIT_COPIES = 4  # plain loss: logits, the shifted copy, log-softmax and the logits' gradient
CHUNK_COPIES = 1.5  # chunked: one chunk of fp32 logits, made its own gradient in place; + bf16 product


@dataclass
class MemoryEstimate:
    loaded_mb: float  # resident now: libraries, weights, data
    gradients_mb: float
    optimizer_mb: float
    activations_mb: float
    logits_mb: float

    @property
    def peak_mb(self) -> float:
        return self.loaded_mb + self.gradients_mb + self.optimizer_mb + self.activations_mb + self.logits_mb

    def line(self, batch: int, length: int | None) -> str:
        shape = f"{batch} x {length} tokens" if length else f"{batch} examples"
        return (f"memory estimate: peak {self.peak_mb:,.0f} MB = {self.loaded_mb:,.0f} loaded + "
                f"{self.gradients_mb + self.optimizer_mb:,.0f} gradients and optimiser + "
                f"{self.activations_mb:,.0f} activations ({shape}) + {self.logits_mb:,.0f} logits")

    def as_dict(self) -> dict:
        return {**{k: round(v, 1) for k, v in asdict(self).items()}, "peak_mb": round(self.peak_mb, 1)}


def estimate_memory(handle: ModelHandle, train_split, cfg: TrainConfig, head_loss: ChunkedLMLoss | None
                    ) -> tuple[MemoryEstimate, int | None]:
    """The estimate, and the example length it assumed (the longest training example; None for
    inputs without a length, such as images)."""
    _read_weights(handle.model)
    loaded = resident_mb()  # before the probe below allocates anything
    trainable = sum(p.numel() * 4 for p in handle.model.parameters() if p.requires_grad)  # fp32
    lengths = getattr(train_split, "lengths", None) if handle.modality == "text" else None  # tokens
    index, length = (int(lengths.argmax()), int(lengths.max())) if lengths is not None else (0, None)
    with _random_state_kept(handle.device):  # the probe leaves no trace in the training's draws
        # (collating may draw too: masked-LM masks come from torch's generator)
        per_example = _activation_bytes(handle, train_split.collate([index]), cfg.activation_checkpointing,
                                        head_loss)
    logits = 0.0
    if handle.output == "next_token" and length is not None:
        vocab = handle.model.get_output_embeddings().weight.shape[0]
        tokens = cfg.batch_size * length
        rows = min(head_loss.chunk, tokens) * CHUNK_COPIES if head_loss else tokens * LOGIT_COPIES
        logits = rows * vocab * 4
    estimate = MemoryEstimate(loaded, trainable / MB, OPTIMIZER_STATES[cfg.optimizer] * trainable / MB,
                              per_example * cfg.batch_size / MB, logits / MB)
    return estimate, length


@torch.no_grad()
def _read_weights(model: nn.Module) -> None:
    """Read one value per memory page of every weight. Weights loaded from a safetensors file are
    mapped from it and become resident only when first read, which training does at its first
    step: counted as loaded before that, they were missing from the estimate (540 MB of SmolLM2)."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.numel() and tensor.device.type == "cpu" and tensor.is_contiguous():
            tensor.view(-1)[:: max(1, 4096 // tensor.element_size())].sum()


def _activation_bytes(handle: ModelHandle, batch: dict, checkpointing: bool | int,
                      head_loss: ChunkedLMLoss | None) -> float:
    """Bytes the backward keeps for one example: counted in one forward, block by block."""
    saved: dict[int, int] = {}  # storage -> bytes, each storage once (views share one)
    weights = {p.untyped_storage().data_ptr() for p in handle.model.parameters()}

    def count(tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:  # weights are in the loaded memory already
            saved.setdefault(storage.data_ptr(), storage.nbytes())

    blocks = list(handle.blocks) if checkpointing else []
    entered: dict[int, tuple[int, int]] = {}  # block -> (bytes saved before it, its input's bytes)
    spans: list[tuple[int, int]] = []  # per block: bytes it saved, bytes of its input

    def enter(i: int, args: tuple) -> None:
        entered[i] = (sum(saved.values()), sum(a.nbytes for a in args if isinstance(a, torch.Tensor)))

    def leave(i: int) -> None:
        before, inputs = entered[i]
        spans.append((sum(saved.values()) - before, inputs))

    hooks = [b.register_forward_pre_hook(lambda m, args, i=i: enter(i, args)) for i, b in enumerate(blocks)]
    hooks += [b.register_forward_hook(lambda m, args, out, i=i: leave(i)) for i, b in enumerate(blocks)]
    modules = list(handle.model.modules())
    modes = [m.training for m in modules]
    # Buffers a training forward updates (quantisation observers, which may even resize them):
    # put back as they were, by replacing each one.
    buffers = [(m, name, b.clone()) for m in modules for name, b in m._buffers.items() if b is not None]
    handle.model.train()
    for m in modules:  # BatchNorm in eval mode: its statistics stay, and one example is enough
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    try:
        with lean_activations(handle.model, observe=count):  # as the loop trains
            if head_loss:
                head_loss.hidden_states(handle, batch)
            else:
                handle.forward(batch)
    finally:
        for hook in hooks:
            hook.remove()
        for m, mode in zip(modules, modes, strict=True):
            m.training = mode
        for m, name, b in buffers:
            m._buffers[name] = b
    total = float(sum(saved.values()))
    chosen = [spans[i] for i in chosen_blocks(len(spans), checkpointing)]
    if chosen:  # these keep their input only, and one of them is recomputed at a time
        total += sum(inputs - own for own, inputs in chosen) + max(own for own, _ in chosen)
    return total


@contextmanager
def _random_state_kept(device: torch.device) -> Iterator[None]:
    """torch's generators (CPU, and the device's), numpy's and Python's, as they were before."""
    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        yield
    random.setstate(python)
    np.random.set_state(numpy)
