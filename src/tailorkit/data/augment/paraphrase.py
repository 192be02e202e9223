"""Paraphrases of training rows written by a local instruction-tuned causal LM (the catalogue's
`smollm2-135m`, or any chat model folder), each asked through its own chat template.

A paraphrase may drift from its row's meaning. With `label_filter`, a classifier fitted on the
original training rows (TF-IDF word 1-2-grams + logistic regression, the cheap model of
label-error search) labels each paraphrase, and one whose predicted label is not its row's is
dropped and recorded, so a paraphrase the data's own model no longer agrees with never trains.
"""

from __future__ import annotations

import pandas as pd
import torch

from tailorkit.config.quality import ParaphraseConfig
from tailorkit.data.augment.local_models import load_local_model
from tailorkit.data.cleaning.changes import Change
from tailorkit.data.templates import stop_token_ids
from tailorkit.errors import TailorError

FIELD = "data.augment.paraphrase"


def _load(name: str):
    path, model, tokenizer = load_local_model(name, f"{FIELD}.model", "AutoModelForCausalLM", "causal LM")
    if not getattr(tokenizer, "chat_template", None):
        raise TailorError(f"{FIELD}.model: {path} has no chat template; paraphrasing needs an "
                          "instruction-tuned (chat) model such as smollm2-135m")
    return model.eval(), tokenizer


def paraphrase(texts: list[str], cfg: ParaphraseConfig) -> list[str]:
    """One sampled paraphrase per text, in order, from one seeded generator."""
    model, tokenizer = _load(cfg.model)
    stops = stop_token_ids(tokenizer)
    torch.manual_seed(cfg.seed)  # sampling draws from the global generator
    out = []
    with torch.inference_mode():
        for text in texts:
            messages = [{"role": "user", "content": cfg.prompt.format(text=text)}]
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)
            new = model.generate(**ids, max_new_tokens=cfg.max_new_tokens, do_sample=True,
                                 temperature=cfg.temperature, top_p=cfg.top_p, eos_token_id=stops,
                                 pad_token_id=stops[0])
            reply = tokenizer.decode(new[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
            out.append(" ".join(reply.split()))
    return out


def label_agreement(texts: list[str], labels: list[str], candidates: list[str]) -> list[bool]:
    """Whether a classifier fitted on (texts, labels) gives each candidate its row's label."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                          LogisticRegression(max_iter=1000))
    model.fit(texts, labels)
    return [bool(p == label) for p, label in zip(model.predict(candidates), labels, strict=True)]


def paraphrased_rows(frame: pd.DataFrame, cfg: ParaphraseConfig, text_column: str, label_column: str | None,
                     classes: bool) -> tuple[list[dict], list[Change]]:
    """New rows (one per row whose paraphrase is non-empty and new), and a change per paraphrase:
    `added`, or `dropped` when the label filter disagrees."""
    texts = [str(t) for t in frame[text_column]]
    para = paraphrase(texts, cfg)
    labels = [str(v) for v in frame[label_column]] if label_column is not None else None
    check = cfg.label_filter and classes and labels is not None and len(set(labels)) > 1
    agrees = label_agreement(texts, labels, para) if check else [True] * len(texts)
    rows, changes = [], []
    for (index, row), text, new, ok in zip(frame.iterrows(), texts, para, agrees, strict=True):
        if not new or new == text.strip():
            continue
        origin = f"from row {int(index) + 1}"
        if not ok:
            changes.append(Change("train", int(index) + 1, "rejected", "paraphrase_label_disagrees",
                                  f"{origin}: the TF-IDF model labels it otherwise", new))
            continue
        rows.append({**row.to_dict(), text_column: new})
        changes.append(Change("train", int(index) + 1, "added", "paraphrase", origin, new))
    return rows, changes
