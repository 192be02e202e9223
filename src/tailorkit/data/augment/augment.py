"""New training rows made from existing ones by EDA edits (and, when asked, back-translation and
paraphrases by a chat model: backtranslate.py, paraphrase.py); the training split only.

How many: `per_example` new rows per row; with `balance`, each class gets as many new rows as
it takes to reach the largest class's size (times 1 + per_example); `max_per_class` caps any
class. Every random choice comes from one `random.Random(seed)`, in row order, so the same seed,
data and synonyms give the same rows.
"""

from __future__ import annotations

import random
from collections import Counter

import pandas as pd

from tailorkit.config.quality import AugmentConfig
from tailorkit.data.augment.backtranslate import back_translated_rows
from tailorkit.data.augment.eda import (
    Synonyms,
    random_deletion,
    random_insertion,
    random_swap,
    synonym_replacement,
)
from tailorkit.data.augment.paraphrase import paraphrased_rows
from tailorkit.data.cleaning.changes import Change

ATTEMPTS = 4  # ops tried per new row before giving up (one word and no synonyms: no edit is new)


def stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def edit(text: str, op: str, cfg: AugmentConfig, rng: random.Random, synonyms: Synonyms | None,
         stops: frozenset[str]) -> str:
    words = text.split()
    n = max(1, int(cfg.alpha * len(words)))
    if op == "synonym" and synonyms is not None:
        words = synonym_replacement(words, n, rng, synonyms, stops)
    elif op == "insert" and synonyms is not None:
        words = random_insertion(words, n, rng, synonyms, stops)
    elif op == "swap":
        words = random_swap(words, n, rng)
    elif op == "delete":
        words = random_deletion(words, cfg.alpha, rng)
    return " ".join(words)


def new_rows_per_row(labels: list[str], cfg: AugmentConfig, rng: random.Random) -> list[int]:
    """How many new rows each row of a classification table makes."""
    counts = Counter(labels)
    largest = max(counts.values())
    out = [0] * len(labels)
    for label, n in counts.items():
        target = (largest if cfg.balance else n) * (1 + cfg.per_example)
        if cfg.max_per_class is not None:
            target = min(target, max(cfg.max_per_class, n))
        extra = target - n
        positions = [i for i, value in enumerate(labels) if value == label]
        order = positions[:]
        rng.shuffle(order)  # who gets the remainder
        for k, i in enumerate(order):
            out[i] = extra // n + (1 if k < extra % n else 0)
    return out


def augment_frame(frame: pd.DataFrame, cfg: AugmentConfig, text_column: str, label_column: str | None,
                  classes: bool, synonyms: Synonyms | None) -> tuple[pd.DataFrame, list[Change]]:
    """`frame` with the new rows appended (index continuing after the largest), and one `added`
    change per new row. Regression targets are copied with their row; classes may be balanced.
    Rows without a label are kept as they are and make no new rows."""
    rng = random.Random(cfg.seed)
    stops = stop_words()
    source = frame if label_column is None else frame[frame[label_column].notna()]
    if classes and label_column is not None:
        counts = new_rows_per_row(source[label_column].astype(str).tolist(), cfg, rng)
    else:
        counts = [cfg.per_example] * len(source)
    ops = [op for op in cfg.ops if synonyms is not None or op not in ("synonym", "insert")]
    added, changes = [], []
    if cfg.back_translation is not None:  # model output, no random choice: the EDA draws are unchanged
        added, changes = back_translated_rows(source, cfg.back_translation, text_column)
    if cfg.paraphrase is not None:  # sampled from torch's own seeded generator, not from rng
        rows, notes = paraphrased_rows(source, cfg.paraphrase, text_column, label_column, classes)
        added, changes = added + rows, changes + notes
    if not ops:
        counts = [0] * len(source)
    for (index, row), copies in zip(source.iterrows(), counts, strict=True):
        text = str(row[text_column])
        made = {text}  # a short text has few edits: no row twice
        for _ in range(copies):
            for _ in range(ATTEMPTS):
                op = rng.choice(ops)
                new = edit(text, op, cfg, rng, synonyms, stops)
                if new not in made and new.strip():
                    made.add(new)
                    added.append({**row.to_dict(), text_column: new})
                    changes.append(Change("train", int(index) + 1, "added", f"eda:{op}",
                                          f"from row {int(index) + 1}", new))
                    break
    if not added:
        return frame, changes
    start = int(frame.index.max()) + 1 if len(frame) else 0
    extra = pd.DataFrame(added, index=range(start, start + len(added)), columns=frame.columns)
    return pd.concat([frame, extra]), changes
