"""The local model folders augmentation runs (translation and chat models), loaded once per call."""

from __future__ import annotations

import warnings

import torch

from tailorkit.errors import TailorError, first_line
from tailorkit.sources import resolve_model


def load_local_model(name: str, field: str, auto_class: str, kind: str):
    """(path, model in eval mode, tokenizer) for a folder or catalogue name; a one-line error
    naming the recipe `field` when it is missing or is not a `kind` folder."""
    import transformers
    from transformers.utils import logging as hf_logging

    try:
        path = resolve_model(name)
    except TailorError as err:
        raise TailorError(f"{field}: {str(err).removeprefix('model.name: ')}") from None
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model = getattr(transformers, auto_class).from_pretrained(path, dtype=torch.float32)
        with warnings.catch_warnings():  # MarianTokenizer's advice to install sacremoses (unused here)
            warnings.filterwarnings("ignore", message=".*sacremoses")
            tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError) as err:
        raise TailorError(f"{field}: {path} is not a {kind} folder: {first_line(err)}") from None
    return path, model.eval(), tokenizer
