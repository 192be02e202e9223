"""Keep fewer activations: a tensor that is cheap to rebuild from tensors the backward keeps
anyway is saved as a recipe instead, and rebuilt when the backward needs it (selective
recomputation: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models").

Three tensors of a Llama-style block qualify:
- an RMSNorm's output: the layers it feeds (q, k, v; gate, up; the LM head) keep it for their
  LoRA or weight gradients, while the norm keeps its own input, the residual stream;
- the residual stream after attention, h1 + o_proj(o), which the second norm keeps, while the
  first keeps h1 and attention keeps o: one o_proj product to rebuild (_residual_hooks);
- the gated MLP's product silu(gate x) * up x, which down_proj keeps, while the gated product
  itself keeps `gate x` and `up x` (train/gated_mlp.py).
For SmolLM2-135M that is 3,264 of about 9,000 floats per token and layer. Attention keeps
grouped key/value heads unrepeated (train/lean_attention.py). The rebuilt tensor is
computed by the same operations on the same inputs, so gradients are bit-identical. A tensor
modified in place after the forward made it is kept as it is (its version counter says so).
Dropout masks are drawn with train/fast_dropout.py's cheaper draw and kept as bytes. The last
layer of a [CLS]-pooled classifier computes only the position its head reads (models/first_token.py).

torch.autograd.graph.saved_tensors_hooks does the work: `pack` sees every tensor autograd saves
and returns either it or the recipe; `unpack` rebuilds a recipe once and hands the value to each
of its readers (q, k and v read the same norm output), dropping it after the last.
Blocks under activation checkpointing have their own hooks, which take precedence inside them.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import NamedTuple

import torch
from torch import nn

from tailorkit.models.first_token import first_token_only
from tailorkit.train.fast_dropout import fast_dropout
from tailorkit.train.gated_mlp import lean_gated_mlps
from tailorkit.train.lean_attention import lean_attention


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
            args = [SavedRebuilder.unpack(a) for a in self.args]  # an input may be a recipe too
            with torch.no_grad(), torch.autocast(self.device_type, dtype=dtype, enabled=enabled):
                self.value = self.fn(*args).contiguous()
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
        if recipe.unpacks_left == 0:  # its inputs are saved with it, as recipes where they are
            recipe.args = tuple(self.pack(arg) for arg in recipe.args)
        recipe.unpacks_left += 1
        return _View(recipe, tensor.size(), tensor.stride(), tensor.storage_offset() - recipe.offset)

    @staticmethod
    def unpack(packed: torch.Tensor | _View) -> torch.Tensor:
        return packed.rebuild() if isinstance(packed, _View) else packed

    def _keep(self, tensor: torch.Tensor) -> None:
        if self._observe is not None:
            self._observe(tensor)


def _training_output(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """module(x) as the training forward computed it (fused LoRA layers take another path
    without autograd, train/fused_lora.py)."""
    own = getattr(module, "training_output", None)
    return own(x) if own is not None else module(x)


def _residual_after_attention(out_proj: nn.Module, h1: torch.Tensor, o_in: torch.Tensor) -> torch.Tensor:
    return h1 + _training_output(out_proj, o_in)


def _residual_hooks(block: nn.Module, rebuilder: SavedRebuilder) -> list:
    """A pre-norm block's residual stream after attention, h2 = h1 + o_proj(o), which its
    second norm keeps, rebuilt from h1 (the first norm keeps it) and o (attention keeps it):
    one o_proj product in the backward, for hidden_size floats per token. Checked once: the
    rebuild must equal the forward's h2 to the bit, else the block keeps h2."""
    norm1, norm2 = getattr(block, "input_layernorm", None), getattr(block, "post_attention_layernorm", None)
    out_proj = getattr(getattr(block, "self_attn", None), "o_proj", None)
    if not all(isinstance(m, nn.Module) for m in (norm1, norm2, out_proj)) or any(
            isinstance(m, nn.Dropout) and m.p > 0 for m in out_proj.modules()):  # a rebuild would redraw
        return []
    seen: dict[str, torch.Tensor] = {}
    checked: list[bool] = []

    def first_norm(module: nn.Module, args: tuple) -> None:
        seen["h1"] = args[0]

    def out_projection(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        seen["o"] = args[0]

    def second_norm(module: nn.Module, args: tuple) -> None:
        h1, o = seen.pop("h1", None), seen.pop("o", None)
        if h1 is None or o is None or not torch.is_grad_enabled():
            return
        if not checked:
            with torch.no_grad():
                checked.append(torch.equal(args[0], _residual_after_attention(out_proj, h1, o)))
        if checked[0]:
            rebuilder.register(args[0], functools.partial(_residual_after_attention, out_proj), h1, o)

    return [norm1.register_forward_pre_hook(first_norm), out_proj.register_forward_hook(out_projection),
            norm2.register_forward_pre_hook(second_norm)]


def is_rms_norm(module: nn.Module) -> bool:
    """Llama, Mistral, Qwen and SmolLM name theirs <Family>RMSNorm; torch's is nn.RMSNorm."""
    return type(module).__name__.endswith("RMSNorm")


@contextmanager
def lean_activations(model: nn.Module, observe: Callable[[torch.Tensor], None] | None = None
                     ) -> Iterator[None]:
    """Inside, a training forward of `model` keeps its RMSNorm outputs, residuals after attention
    and gated-MLP products as recipes, its gated MLPs keep two tensors instead of three, its
    attention keeps grouped key/value heads unrepeated, its dropout draws cheaper masks, and a
    [CLS]-pooled classifier's last layer computes position 0 only.
    `observe` sees every tensor still kept. Outside, the model is as it was."""
    rebuilder = SavedRebuilder(observe)

    def norm_output(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if isinstance(output, torch.Tensor) and len(args) == 1 and isinstance(args[0], torch.Tensor):
            rebuilder.register(output, module, args[0])

    hooks = [m.register_forward_hook(norm_output) for m in model.modules() if is_rms_norm(m)]
    hooks += [h for block in model.modules() for h in _residual_hooks(block, rebuilder)]
    try:
        with lean_gated_mlps(model, rebuilder.register) as mlps, \
                lean_attention(model), fast_dropout(model), first_token_only(model):
            needed = hooks or mlps or observe is not None  # a BERT or a CNN pays no hook per save
            with torch.autograd.graph.saved_tensors_hooks(rebuilder.pack, rebuilder.unpack) if needed \
                    else nullcontext():
                yield
    finally:
        for hook in hooks:
            hook.remove()
