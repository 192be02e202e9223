"""The last layer of a [CLS]-pooled classifier computes position 0 only.

A BERT-style sequence classifier reads one position of its last layer: BERT's pooler and the
RoBERTa and ELECTRA heads take hidden[:, 0]. The other positions' outputs of that layer are
computed, kept for the backward, and thrown away. Everything in the layer but attention is
position-wise, and attention needs every position only for its keys and values; so position 0
needs its query, its attention row, the output projection, the feed-forward layers and their
norms. For MiniLM-L6 (6 layers, 128 tokens) the last layer then costs about a sixth of a layer:
a training step is 1.15-1.25x faster (bench/first_token.py).

The logits and gradients are the whole layer's: the same operations on the rows the head reads
(tests/models/test_first_token.py compares them with the unchanged model). Dropout in that layer
draws one position's mask instead of every position's, so a seed draws other masks than the
whole layer would.

Inside `first_token_only(model)` (lean_activations enters it) training forwards take this path;
with `inference=True` (the evaluator's) every forward does. A forward with a key/value cache
(prefix tuning) or cross-attention runs the whole layer, as does every forward outside: the
frozen-prefix cache, for one, keeps every position of the last layer when all blocks are frozen.
The layer returns (batch, 1, hidden), which the heads read at position 0.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

# Sequence classifiers whose head reads the last layer at position 0 only, and whose layers
# have BERT's structure (RoBERTa, XLM-R, CamemBERT and ELECTRA copy it).
FIRST_TOKEN_CLASSIFIERS = frozenset({
    "BertForSequenceClassification", "RobertaForSequenceClassification",
    "XLMRobertaForSequenceClassification", "CamembertForSequenceClassification",
    "ElectraForSequenceClassification",
})
_LAYER_PARTS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output",
                "intermediate", "output")


def last_layer(model: nn.Module) -> nn.Module | None:
    """The last encoder layer of a first-token classifier inside `model` (which may be wrapped,
    by PEFT for one), or None."""
    classifier = next((m for m in model.modules() if type(m).__name__ in FIRST_TOKEN_CLASSIFIERS), None)
    if classifier is None:
        return None
    config = classifier.config
    if config.is_decoder or getattr(config, "add_cross_attention", False) or config.chunk_size_feed_forward:
        return None
    layers = getattr(getattr(classifier.base_model, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not len(layers):
        return None
    layer = layers[-1]
    has_parts = all(_submodule(layer, path) is not None for path in _LAYER_PARTS)
    return layer if has_parts and hasattr(_submodule(layer, "attention.self"), "scaling") else None


def _submodule(module: nn.Module, path: str) -> nn.Module | None:
    for name in path.split("."):
        module = getattr(module, name, None)
        if not isinstance(module, nn.Module):
            return None
    return module


def first_token_forward(layer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """A BERT-style layer's output at position 0, (batch, 1, hidden), from its input at every
    position: the layer's own modules and attention function, with the query of position 0."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    attention = layer.attention.self
    batch, length, _ = hidden.shape
    first = hidden[:, :1]
    head = attention.attention_head_size
    query = attention.query(first).view(batch, 1, -1, head).transpose(1, 2)
    key = attention.key(hidden).view(batch, length, -1, head).transpose(1, 2)
    value = attention.value(hidden).view(batch, length, -1, head).transpose(1, 2)
    if mask is not None and mask.dim() == 4 and mask.shape[2] > 1:
        mask = mask[:, :, :1]  # the first query's row
    eager = sys.modules[type(attention).__module__].eager_attention_forward  # the model's own
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(attention.config._attn_implementation, eager)
    context, _ = interface(attention, query, key, value, mask, dropout=attention.dropout.p
                           if attention.training else 0.0, scaling=attention.scaling)
    attended = layer.attention.output(context.reshape(batch, 1, -1), first)
    return layer.output(layer.intermediate(attended), attended)


_SWAPPED: dict[type, type] = {}


def _whole_layer(encoder_hidden_states: torch.Tensor | None, args: tuple, kwargs: dict) -> bool:
    """A key/value cache (prefix tuning), cross-attention or attention weights: the layer's own forward."""
    return encoder_hidden_states is not None or bool(args) or kwargs.get("past_key_values") is not None \
        or kwargs.get("encoder_attention_mask") is not None or bool(kwargs.get("output_attentions"))


def _first_token_class(base: type) -> type:
    """A subclass of the layer's class whose forward can be `first_token_forward`."""
    if base not in _SWAPPED:
        def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                    encoder_hidden_states: torch.Tensor | None = None, *args, **kwargs) -> torch.Tensor:
            now = self.first_token_in_inference or torch.is_grad_enabled()
            if now and not _whole_layer(encoder_hidden_states, args, kwargs):
                return first_token_forward(self, hidden_states, attention_mask)
            return base.forward(self, hidden_states, attention_mask, encoder_hidden_states, *args, **kwargs)

        _SWAPPED[base] = type(f"FirstToken{base.__name__}", (base,), {"forward": forward})
    return _SWAPPED[base]


@contextmanager
def first_token_only(model: nn.Module, inference: bool = False) -> Iterator[nn.Module | None]:
    """Inside, training forwards (with `inference`, all forwards) of a first-token classifier's
    last layer compute position 0 only; yields that layer, or None where `model` is not such a
    classifier. Contexts nest; outside the outermost, the layer is as it was."""
    layer = last_layer(model)
    if layer is None:
        yield None
        return
    nested = type(layer) in _SWAPPED.values()  # an outer context swapped it
    if not nested:
        base = type(layer)
        layer.__class__ = _first_token_class(base)
        layer.first_token_in_inference = False
    before = layer.first_token_in_inference
    layer.first_token_in_inference = before or inference
    try:
        yield layer
    finally:
        layer.first_token_in_inference = before
        if not nested:
            layer.__class__ = base
            del layer.first_token_in_inference
