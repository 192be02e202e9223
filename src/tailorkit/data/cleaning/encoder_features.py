"""Frozen encoder features for the label-error search: each row's mean-pooled last hidden state.

Computed once and kept on disk by `data/feature_cache.py`, under the key the `features` method
uses (the model's files, the token ids after truncation, max_length, mean pooling), so a second
search over the same rows, or a `features` run on the same model and texts, reads them back
instead of running the model again.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tailorkit.data.batching import EncodedSplit
from tailorkit.data.feature_cache import cache_key, cached_features, files_identity
from tailorkit.data.prepare import Split
from tailorkit.errors import TailorError
from tailorkit.models.feature_model import FeatureModel
from tailorkit.models.handle import _check_weights
from tailorkit.sources import resolve_model

BATCH_SIZE = 64


@dataclass(frozen=True)
class Encoder:
    """Which encoder, and the field or flag that named it (for error messages)."""

    name: str  # catalogue name or folder
    where: str  # e.g. model.name, data.clean.label_error_model, --model
    max_length: int = 128
    progress: bool = True  # a progress bar on stderr while encoding


def load_encoder(encoder: Encoder):
    """(model, tokenizer) of a Hugging Face encoder folder, or a one-line error naming the field."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_MAPPING_NAMES,
    )
    from transformers.utils import logging as hf_logging

    where = encoder.where
    try:
        path = resolve_model(encoder.name)
        _check_weights(path)
    except TailorError as err:
        raise TailorError(f"{where}: {str(err).removeprefix('model.name: ')}") from None
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as err:
        raise TailorError(f"{where}: {path}: transformers cannot read its config.json ({err})") from None
    kind = config.model_type
    archs = config.architectures or []
    generative = kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    decoder = (generative or getattr(config, "is_encoder_decoder", False)
               or any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in archs))
    if decoder or kind not in MODEL_MAPPING_NAMES:
        what = "a generative (decoder) model" if decoder else f"a '{kind}' model, not a text encoder"
        other = "; name one with data.clean.label_error_model" if where == "model.name" else ""
        raise TailorError(f"{where}: {encoder.name} is {what}; label-error features need a text encoder "
                          f"such as BERT or MiniLM (e.g. minilm-l6){other}")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError) as err:
        raise TailorError(f"{where}: {path}: cannot load it as a text encoder ({err})") from None
    return model, tokenizer


def encoder_features(encoder: Encoder, texts: list[str], pairs: list[str] | None = None
                     ) -> tuple[np.ndarray, bool]:
    """(rows x hidden) float32 features of `texts` (and `pairs`), and whether they came from the cache."""
    model, tokenizer = load_encoder(encoder)
    max_length = min(encoder.max_length, tokenizer.model_max_length)
    split = Split(encoder.where, texts, pairs, np.zeros(len(texts), dtype=np.int64))
    encoded = EncodedSplit(split, tokenizer, max_length)
    # the same identity as a `features` run on this model (text, mean pooling, fp32): one cache
    identity = {"model": {"files": files_identity(resolve_model(encoder.name))}, "modality": "text",
                "pooling": "mean", "preprocessing": {"max_length": max_length}, "bf16": False}
    extractor = FeatureModel(model, "text", nn.Identity(), {"pooling": "mean"})
    label = f"encoding {len(texts):,} rows with {encoder.name}" if encoder.progress else None
    features, hit = cached_features(extractor, encoded, cache_key(identity, encoded), "disk", BATCH_SIZE,
                                    bf16=False, progress=label)
    if hit and encoder.progress:
        print(f"{encoder.name} features of {len(texts):,} rows read from the cache", file=sys.stderr)
    return features.numpy(), hit
