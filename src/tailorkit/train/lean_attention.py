"""Attention that keeps less for the backward (used by train/lean_activations.py).

transformers' SDPA attention repeats grouped key/value heads (GQA: SmolLM2 has 3 for its 9 query
heads) to every query head whenever there is a padding mask, because CUDA's fast kernels refuse
a mask with GQA, and SDPA then keeps the repeated keys and values for its backward. On the CPU,
whose kernel takes a mask with GQA, they go to SDPA as they are (`enable_gqa`): the keys and
values kept are n_rep times smaller (90 MB less for SmolLM2 at 8 x 128), and the kernel runs
faster. The output is identical; the key and value gradients are summed over each group inside
the kernel, in another order (equal within 1e-6, tests/train/test_lean_attention.py).

A boolean padding mask is also turned into SDPA's additive form once per forward rather than by
the kernel in every layer, which kept one copy per layer (15 MB for SmolLM2 at 8 x 128).

With attention dropout, SDPA runs its math path on the CPU (in fp32 even under bf16), where
drawing the dropout mask is the largest cost: such layers run transformers' eager attention with
train/fast_dropout.py's cheaper draw instead (BERT-style encoders train with attention dropout 0.1).

Only a training forward without a cache, position bias or softcap takes this path; everything
else goes to transformers' function unchanged. Attention layers are the modules with `scaling`
and `is_causal`, which transformers' Llama- and BERT-style attention layers have.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

from tailorkit.train import fast_dropout

_ACTIVE: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_UNSUPPORTED = ("cache", "position_bias", "softcap")
_ADDITIVE: list[weakref.ref | None] = [None, None]  # the last boolean mask seen, its additive form


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where attended, -inf elsewhere: what SDPA's kernel makes of a boolean mask, made once
    for all the layers of a forward (they get the same mask)."""
    mask_ref, additive_ref = _ADDITIVE
    additive = additive_ref() if additive_ref is not None else None
    if mask_ref is None or mask_ref() is not mask or additive is None or additive.dtype != dtype:
        additive = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(
            mask.logical_not(), float("-inf"))
        _ADDITIVE[:] = [weakref.ref(mask), weakref.ref(additive)]  # SDPA's backward keeps it alive
    return additive


def _sdpa(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
          attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
          is_causal: bool | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """transformers' `sdpa_attention_forward` for a training forward of an active module."""
    if module not in _ACTIVE or not torch.is_grad_enabled() or any(
            kwargs.get(name) is not None for name in _UNSUPPORTED) or kwargs.get("output_attentions"):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    drop = fast_dropout.applies(query, dropout)  # dropout: SDPA would take its math path
    gqa = groups > 1 and not drop and (query.device.type == "cpu" or attention_mask is None)
    if groups > 1 and not gqa:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    is_causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    is_causal = attention_mask is None and is_causal and query.shape[2] > 1  # as transformers decides
    if is_causal and key.shape[2] > query.shape[2]:  # as transformers does, for the flash kernel
        key, value = key[:, :, : query.shape[2]], value[:, :, : query.shape[2]]
    if drop:
        out = fast_dropout.attention(query, key, value, attention_mask, dropout, scaling, is_causal)
        return out.transpose(1, 2).contiguous(), None
    if attention_mask is not None and attention_mask.dtype == torch.bool:
        device = query.device.type  # under autocast the kernel sees the autocast dtype
        attention_mask = _additive(attention_mask, torch.get_autocast_dtype(device)
                                   if torch.is_autocast_enabled(device) else query.dtype)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout,
                                         scale=scaling, is_causal=is_causal, enable_gqa=gqa)
    return out.transpose(1, 2).contiguous(), None


@contextmanager
def lean_attention(model: nn.Module) -> Iterator[int]:
    """Inside, the SDPA attention layers of `model` train on `_sdpa`; yields how many. Other
    models, and `model` outside, use transformers' function."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS  # loads scipy: only with a model
    config = getattr(model, "config", None)
    layers = [m for m in model.modules() if hasattr(m, "scaling") and hasattr(m, "is_causal")] \
        if getattr(config, "_attn_implementation", None) == "sdpa" else []
    for layer in layers:
        _ACTIVE.add(layer)
    installed = bool(layers) and ALL_ATTENTION_FUNCTIONS["sdpa"] is not _sdpa
    if installed:
        ALL_ATTENTION_FUNCTIONS["sdpa"] = _sdpa  # a local override on transformers' own registry
    try:
        yield len(layers)
    finally:
        for layer in layers:
            _ACTIVE.discard(layer)
        if installed:
            del ALL_ATTENTION_FUNCTIONS["sdpa"]
