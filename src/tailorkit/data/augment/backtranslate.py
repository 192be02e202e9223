"""Back-translation: each training row translated to a pivot language and back, through two local
seq2seq model folders (any `AutoModelForSeq2SeqLM`: MarianMT pairs, T5, mBART...).

The round trip keeps the meaning and changes the wording, so the copy keeps its row's label.
Generation is greedy (or beam search), so the same models and data give the same rows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from tailorkit.config.quality import BackTranslationConfig
from tailorkit.data.augment.local_models import load_local_model
from tailorkit.data.cleaning.changes import Change

FIELD = "data.augment.back_translation"


def _load(name: str, which: str):
    _, model, tokenizer = load_local_model(name, f"{FIELD}.{which}", "AutoModelForSeq2SeqLM",
                                           "seq2seq (translation) model")
    return model, tokenizer


def translate(texts: list[str], name: str, which: str, cfg: BackTranslationConfig) -> list[str]:
    model, tokenizer = _load(name, which)
    out: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(texts), cfg.batch_size):
            batch = tokenizer(texts[start:start + cfg.batch_size], return_tensors="pt", padding=True,
                              truncation=True, max_length=cfg.max_length)
            batch.pop("token_type_ids", None)
            # A translation is seldom over twice its source's length; the bound also stops the
            # repetition loops MT models fall into on noisy input.
            longest = min(cfg.max_length, 2 * batch["input_ids"].shape[1] + 8)
            ids = model.generate(**batch, max_new_tokens=longest, num_beams=cfg.num_beams, do_sample=False)
            out += [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return out


def back_translate(texts: list[str], cfg: BackTranslationConfig) -> list[str]:
    """Each text through `forward`, then `backward`."""
    return translate(translate(texts, cfg.forward, "forward", cfg), cfg.backward, "backward", cfg)


def back_translated_rows(frame: pd.DataFrame, cfg: BackTranslationConfig, text_column: str
                         ) -> tuple[list[dict], list[Change]]:
    """One new row per row whose round trip is non-empty and differs from it, with its change."""
    texts = [str(t) for t in frame[text_column]]
    rows, changes = [], []
    for (index, row), text, new in zip(frame.iterrows(), texts, back_translate(texts, cfg), strict=True):
        if new and new != text.strip():
            rows.append({**row.to_dict(), text_column: new})
            changes.append(Change("train", int(index) + 1, "added", "back_translation",
                                  f"from row {int(index) + 1} via {Path(cfg.forward).name}", new))
    return rows, changes
