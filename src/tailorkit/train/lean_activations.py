"""Keep fewer activations: a tensor that is cheap to rebuild from tensors the backward keeps
anyway is saved as a recipe instead, and rebuilt when the backward needs it (selective
recomputation: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models").

Two tensors of a Llama-style block qualify:
- an RMSNorm's output: the layers it feeds (q, k, v; gate, up; the LM head) keep it for their
  LoRA or weight gradients, while the norm keeps its own input, the residual stream;
- the gated MLP's product silu(gate x) * up x, which down_proj keeps, while the gated product
  itself keeps `gate x` and `up x` (train/gated_mlp.py).
Both are elementwise work to rebuild. For SmolLM2-135M that is 2,688 of about 9,000 floats per
token and layer. The rebuilt tensor is computed by the same operations on the same inputs, so
gradients are bit-identical. A tensor modified in place after the forward made it is kept as it
is (its version counter says so).

torch.autograd.graph.saved_tensors_hooks does the work: `pack` sees every tensor autograd saves
and returns either it or the recipe; `unpack` rebuilds a recipe once and hands the value to each
of its readers (q, k and v read the same norm output), dropping it after the last.
Blocks under activation checkpointing have their own hooks, which take precedence inside them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import NamedTuple

import torch
from torch import nn

from tailorkit.train.gated_mlp import lean_gated_mlps


class _Recipe:
    """fn(*args) under the forward's autocast state; one per registered tensor, shared by its packs."""

    __slots__ = ("fn", "args", "device_type", "autocast", "version", "offset", "unpacks_left", "value")

    def __init__(self, tensor: torch.Tensor, fn: Callable, args: tuple) -> None:
        self.fn, self.args = fn, args
        device = self.device_type = tensor.device.type
        self.autocast = (torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        self.version = tensor._version
        self.offset = tensor.storage_offset()
        self.unpacks_left = 0
        self.value: torch.Tensor | None = None

    def take(self) -> torch.Tensor:
        if self.value is None:
            enabled, dtype = self.autocast
            with torch.no_grad(), torch.autocast(self.device_type, dtype=dtype, enabled=enabled):
                self.value = self.fn(*self.args).contiguous()
        value = self.value
        self.unpacks_left -= 1
        if self.unpacks_left <= 0:  # the last reader has it: keep nothing
            self.value = None
        return value


class _View(NamedTuple):
    """What a reader saved: a view (often a reshape) of the registered tensor's storage."""

    recipe: _Recipe
    size: torch.Size
    stride: tuple[int, ...]
    offset: int  # from the registered tensor's start

    def rebuild(self) -> torch.Tensor:
        value = self.recipe.take()
        return value.as_strided(self.size, self.stride, value.storage_offset() + self.offset)


class SavedRebuilder:
    """The pack and unpack hooks, and the registry of tensors the forward said it can rebuild.

    Readers often save a view rather than the tensor itself (a linear layer saves its input
    flattened to 2-D), so the registry is keyed by storage. It holds each registered tensor
    weakly: when the forward drops a tensor, its recipe and the references to the recipe's
    inputs go with it."""

    def __init__(self, observe: Callable[[torch.Tensor], None] | None = None) -> None:
        self._recipes: dict[int, tuple[weakref.ref, _Recipe]] = {}
        self._observe = observe  # sees every tensor actually kept (the memory estimate counts them)

    def register(self, tensor: torch.Tensor, fn: Callable, *args: torch.Tensor) -> None:
        """From the forward: `tensor` is fn(*args), and fn is cheap."""
        if not torch.is_grad_enabled() or type(tensor) is not torch.Tensor or not tensor.is_contiguous() \
                or not tensor.numel():
            return
        key = tensor.untyped_storage().data_ptr()

        def forget(ref: weakref.ref) -> None:
            if self._recipes.get(key, (None,))[0] is ref:
                del self._recipes[key]

        self._recipes[key] = (weakref.ref(tensor, forget), _Recipe(tensor, fn, args))

    def pack(self, tensor: torch.Tensor) -> torch.Tensor | _View:
        ref, recipe = (None, None)
        if type(tensor) is torch.Tensor and tensor.numel():  # not parameters, not tensor subclasses
            ref, recipe = self._recipes.get(tensor.untyped_storage().data_ptr(), (None, None))
        if ref is None or ref() is None or tensor._version != recipe.version:
            self._keep(tensor)
            return tensor
        if recipe.unpacks_left == 0:
            for arg in recipe.args:
                self._keep(arg)
        recipe.unpacks_left += 1
        return _View(recipe, tensor.size(), tensor.stride(), tensor.storage_offset() - recipe.offset)

    @staticmethod
    def unpack(packed: torch.Tensor | _View) -> torch.Tensor:
        return packed.rebuild() if isinstance(packed, _View) else packed

    def _keep(self, tensor: torch.Tensor) -> None:
        if self._observe is not None:
            self._observe(tensor)


def is_rms_norm(module: nn.Module) -> bool:
    """Llama, Mistral, Qwen and SmolLM name theirs <Family>RMSNorm; torch's is nn.RMSNorm."""
    return type(module).__name__.endswith("RMSNorm")


@contextmanager
def lean_activations(model: nn.Module, observe: Callable[[torch.Tensor], None] | None = None
                     ) -> Iterator[None]:
    """Inside, a training forward of `model` keeps its RMSNorm outputs and gated-MLP products as
    recipes, and its gated MLPs keep two tensors instead of three. Outside, the model is as it was."""
    rebuilder = SavedRebuilder(observe)

    def norm_output(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if isinstance(output, torch.Tensor) and len(args) == 1 and isinstance(args[0], torch.Tensor):
            rebuilder.register(output, module, args[0])

    hooks = [m.register_forward_hook(norm_output) for m in model.modules() if is_rms_norm(m)]
    try:
        with lean_gated_mlps(model, rebuilder.register) as mlps:
            needed = hooks or mlps or observe is not None  # a BERT or a CNN pays no hook per save
            with torch.autograd.graph.saved_tensors_hooks(rebuilder.pack, rebuilder.unpack) if needed \
                    else nullcontext():
                yield
    finally:
        for hook in hooks:
            hook.remove()
