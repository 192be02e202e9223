"""How well the label-error search finds labels we broke on purpose: flip a seeded 5% of the
labels of tweet-sentiment (3,000 sampled tweets) and bbc-news (all 2,225 articles) to another
class, run the search with TF-IDF and with MiniLM-L6 encoder features, and print how many rows
it flags and the precision and recall of those flags against the flipped rows.

    .venv/bin/python bench/label_noise.py                      # the table in docs/data.md
    .venv/bin/python bench/label_noise.py --write runs/noise   # also the noisy tweet files for training

The encoder's features are computed in a fresh cache (the "encode" column), then read back
(the "cached" column). The original labels are not clean either (tweets especially), so a
flag on an unflipped row is not always wrong: precision here is a lower bound.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tailorkit.data.cleaning.encoder_features import Encoder, encoder_features
from tailorkit.data.cleaning.label_errors import find_label_issues
from tailorkit.sources import load_catalogue_dataset

RATE, FOLDS, SEED = 0.05, 5, 0


def flip(labels: pd.Series, rate: float, seed: int) -> tuple[pd.Series, set[int]]:
    """`labels` with a seeded `rate` of positions moved to another class, and those positions."""
    rng = np.random.default_rng(seed)
    classes = sorted(labels.unique())
    chosen = rng.choice(len(labels), size=round(rate * len(labels)), replace=False)
    noisy = labels.copy()
    for i in chosen:
        noisy.iloc[i] = rng.choice([c for c in classes if c != labels.iloc[i]])
    return noisy, {int(i) for i in chosen}


def tweets() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """3,000 training, 500 validation and 1,000 test tweets, disjoint rows of one shuffle."""
    rows = load_catalogue_dataset("tweet-sentiment").sample(4500, random_state=SEED).reset_index(drop=True)
    return rows.iloc[:3000].reset_index(drop=True), rows.iloc[3000:3500], rows.iloc[3500:]


def score(name: str, flagged: list[int], flips: set[int]) -> str:
    hits = len(set(flagged) & flips)
    top = len(set(flagged[:len(flips)]) & flips)  # the len(flips) most confident flags
    precision = hits / len(flagged) if flagged else 0.0
    return (f"| {name} | {len(flagged):,} | {precision:.2f} | {hits / len(flips):.2f} | "
            f"{top / len(flips):.2f}")


def measure(dataset: str, train: pd.DataFrame, max_length: int) -> list[str]:
    noisy, flips = flip(train["label"], RATE, SEED)
    texts, labels = train["text"].astype(str).tolist(), noisy.tolist()
    rows = []
    start = time.perf_counter()
    issues, _ = find_label_issues(texts, labels, FOLDS, SEED)
    rows.append(score(f"{dataset} | tfidf", [i.position for i in issues], flips)
                + f" | {time.perf_counter() - start:.1f} | – |")
    encoder = Encoder("minilm-l6", "--model", max_length)
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TAILORKIT_CACHE"] = cache
        start = time.perf_counter()
        features, _ = encoder_features(encoder, texts)
        issues, _ = find_label_issues(texts, labels, FOLDS, SEED, features)
        first = time.perf_counter() - start
        start = time.perf_counter()
        features, hit = encoder_features(encoder, texts)
        assert hit
        find_label_issues(texts, labels, FOLDS, SEED, features)
        cached = time.perf_counter() - start
    rows.append(score(f"{dataset} | minilm-l6", [i.position for i in issues], flips)
                + f" | {first:.1f} | {cached:.1f} |")
    print(f"{dataset}: {len(train):,} rows, {len(flips)} labels flipped", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--max-length", type=int, default=128, help="tokens the encoder reads per row")
    p.add_argument("--write", type=Path, help="write the noisy tweet train file, validation and test here")
    args = p.parse_args()
    train, validation, test = tweets()
    table = ["| data | features | flagged | precision | recall | precision of the top 5% | seconds | "
             "cached s |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    table += measure("tweet-sentiment", train, args.max_length)
    table += measure("bbc-news", load_catalogue_dataset("bbc-news").reset_index(drop=True), args.max_length)
    print("\n".join(table))
    if args.write:
        args.write.mkdir(parents=True, exist_ok=True)
        noisy, _ = flip(train["label"], RATE, SEED)
        train.assign(label=noisy).to_parquet(args.write / "train-noisy.parquet", index=False)
        validation.to_parquet(args.write / "validation.parquet", index=False)
        test.to_parquet(args.write / "test.parquet", index=False)
        print(f"wrote {args.write}/train-noisy.parquet, validation.parquet, test.parquet")


if __name__ == "__main__":
    main()
