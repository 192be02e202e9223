"""Frozen-prefix caching: compute the frozen lower blocks once, train the rest on their output.

When the embeddings and blocks 1..k are frozen and no method changes what they compute, their
output for an example never changes, provided they run deterministically. So with
`train.frozen_prefix: cache` (the default) they run in eval mode (no dropout), the block-k hidden
states of every example are kept the first time they are computed, and later epochs and
validation passes run only blocks k+1..n and the head on them. `eval` gives the same numbers
without keeping anything (for checking); `train` runs the frozen blocks with dropout, as a plain
PyTorch loop or the transformers Trainer would, and caches nothing.

The states live in one flat fp32 array per split, in memory or, above `train.cache_memory_mb`,
in a memory-mapped file in the run directory that is deleted when training ends.

How the top runs on cached states: for one forward, the model's embeddings module is replaced by
one that returns the given states and its block list by blocks k+1..n; the model's own forward
then builds the attention mask and runs the head as usual. A self-check at the start compares this
with the whole model on a few examples and leaves caching off if they differ.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tailorkit.models.handle import LOSS_KEYS, ModelHandle
from tailorkit.train.setup import TrainingHooks

TOLERANCE = 1e-4  # self-check: largest logit difference, relative to the largest logit
FOLDER = "frozen_prefix"


class _Given(nn.Module):
    """Stands in for the embeddings: returns the hidden states it was given."""

    def __init__(self, states: torch.Tensor) -> None:
        super().__init__()
        self.states = states

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.states


@contextlib.contextmanager
def _swapped(model: nn.Module, replacements: dict[str, nn.Module]):
    originals = {}
    try:
        for path, module in replacements.items():
            parent_path, _, name = path.rpartition(".")
            parent = model.get_submodule(parent_path)
            originals[path] = (parent, name, getattr(parent, name))
            setattr(parent, name, module)
        yield
    finally:
        for parent, name, module in originals.values():
            setattr(parent, name, module)


class HiddenStore:
    """The block-k states of one split: example i is rows offsets[i]:offsets[i+1] of one array."""

    def __init__(self, lengths: np.ndarray, width: int, in_memory: bool, spill: Path) -> None:
        self.lengths = lengths
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        shape = (int(self.offsets[-1]), width)
        if in_memory:
            self.rows = torch.empty(shape)  # pages are touched, and counted, as examples arrive
        else:
            spill.parent.mkdir(parents=True, exist_ok=True)
            self.rows = torch.from_numpy(np.memmap(spill, np.float32, "w+", shape=shape))
        self.filled = np.zeros(len(lengths), dtype=bool)
        self.in_memory = in_memory

    @property
    def nbytes(self) -> int:
        return self.rows.numel() * 4

    def put(self, indices: list[int], states: torch.Tensor) -> None:
        for row, i in enumerate(indices):
            if not self.filled[i]:
                n = int(self.lengths[i])
                self.rows[self.offsets[i] : self.offsets[i] + n] = states[row, :n]
                self.filled[i] = True

    def batch(self, indices: list[int]) -> torch.Tensor:
        """Zero-padded [batch, longest, width]: the attention mask hides the padding."""
        width = int(self.lengths[indices].max())
        out = torch.zeros(len(indices), width, self.rows.shape[1])
        for row, i in enumerate(indices):
            n = int(self.lengths[i])
            out[row, :n] = self.rows[self.offsets[i] : self.offsets[i] + n]
        return out


def frozen_depth(handle: ModelHandle) -> int:
    """k: the embeddings and blocks 1..k hold no trainable parameter."""
    depths = [handle.depth(name) for name in handle.trainable_names()]
    return min(depths, default=handle.num_blocks + 1) - 1


def why_not(handle: ModelHandle, methods: list[TrainingHooks]) -> str | None:
    """Why caching cannot be exact for this setup; None when it can."""
    if handle.modality != "text" or handle.output not in ("classes", "scalar"):
        return "only text classification and regression cache so far"
    unsafe = [m.name for m in methods if not m.keeps_frozen_prefix]
    if unsafe:
        return f"method {', '.join(unsafe)} changes what the frozen blocks compute"
    if frozen_depth(handle) < 1:
        return "the embeddings or the first block train: no frozen prefix"
    return None


class FrozenPrefix:
    """Serves the model's logits for a batch, from cached block-k states where it can."""

    def __init__(self, handle: ModelHandle, memory_mb: int, run_dir: Path, cache: bool = True) -> None:
        self.handle, self.cache = handle, cache
        self.depth = frozen_depth(handle)
        blocks_path = handle.blocks_prefix.rstrip(".")
        blocks = handle.model.get_submodule(blocks_path)
        self._blocks_path, self._embeddings_path = blocks_path, handle.embeddings_prefix.rstrip(".")
        self._lower, self._upper = nn.ModuleList(blocks[: self.depth]), nn.ModuleList(blocks[self.depth :])
        self._frozen = [handle.model.get_submodule(self._embeddings_path), *self._lower]
        self._budget = memory_mb * 2**20
        self._folder = run_dir / FOLDER
        self._stores: dict[int, HiddenStore] = {}

    def deterministic(self) -> None:
        """After model.train(): the frozen blocks run without dropout, cached or not."""
        for module in self._frozen:
            module.eval()

    def logits(self, data, indices: list[int], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if not self.cache:
            return self.handle.forward(batch)
        store = self._store(data)
        if not store.filled[indices].all():
            store.put(indices, self.states(batch))
        return self.top(batch, store.batch(indices).to(self.handle.device))  # kept in host memory

    @torch.no_grad()
    def states(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Block-k output of a batch (the frozen part only).

        The whole model runs in eval mode here, so the head's dropout draws no random numbers
        and the random stream stays the one an uncached run sees. A hook on block k takes its
        output: `output_hidden_states` would keep every lower block's output alive until the
        end (13 MB each for a validation batch of 64 x 128)."""
        modules = list(self.handle.model.modules())
        was_training = [m.training for m in modules]
        self.handle.model.eval()
        device = self.handle.device
        inputs = {k: v.to(device) for k, v in batch.items() if k not in LOSS_KEYS}
        taken: list[torch.Tensor] = []
        hook = self._lower[-1].register_forward_hook(
            lambda module, args, out: taken.append(out[0] if isinstance(out, tuple) else out))
        try:
            with _swapped(self.handle.model, {self._blocks_path: self._lower}):
                self.handle.model(**inputs)
        finally:
            hook.remove()
        for module, mode in zip(modules, was_training, strict=True):
            module.training = mode
        return taken[0].float()

    def top(self, batch: dict[str, torch.Tensor], states: torch.Tensor) -> torch.Tensor:
        """Blocks k+1..n and the head on given block-k states."""
        with _swapped(self.handle.model, {self._embeddings_path: _Given(states),
                                          self._blocks_path: self._upper}):
            return self.handle.forward(batch)

    @torch.no_grad()
    def agrees(self, batch: dict[str, torch.Tensor]) -> bool:
        """The self-check: the cached path computes what the whole model computes."""
        model = self.handle.model
        was_training = model.training
        model.eval()
        whole = self.handle.forward(batch)
        states = self.states(batch) * batch["attention_mask"][..., None]  # padded as the store pads
        split = self.top(batch, states)
        model.train(was_training)
        return bool((whole - split).abs().max() <= TOLERANCE * max(1.0, float(whole.abs().max())))

    def report(self) -> dict:
        stores = self._stores.values()
        return {"mode": "cache" if self.cache else "eval", "frozen_blocks": self.depth,
                "of_blocks": self.handle.num_blocks,
                "cached_mb": round(sum(s.nbytes for s in stores) / 2**20, 1),
                "spilled_to_disk": any(not s.in_memory for s in stores)}

    def close(self) -> None:
        self._stores.clear()
        shutil.rmtree(self._folder, ignore_errors=True)

    def _store(self, data) -> HiddenStore:
        key = id(data)
        if key not in self._stores:
            width = self.handle.model.config.hidden_size
            need = int(data.lengths.sum()) * width * 4
            used = sum(s.nbytes for s in self._stores.values() if s.in_memory)
            self._stores[key] = HiddenStore(data.lengths, width, used + need <= self._budget,
                                            self._folder / f"split{len(self._stores)}.f32")
        return self._stores[key]
