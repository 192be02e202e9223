"""Files for the low-data paraphrase measurement in docs/data.md.

    .venv/bin/python bench/paraphrase_low_data.py prepare   # 200 tweets in 20-row chunks, validation, test
    for c in runs/para/chunks/c??.csv; do                    # one paraphrase per row, a chunk at a time
      .venv/bin/tailor data augment $c --output ${c%.csv}-para.csv --per-example 0 --paraphrase smollm2-135m
    done
    .venv/bin/python bench/paraphrase_low_data.py build N   # training sets from the first N finished chunks

Generation runs at about 10 s of CPU per row here, so it goes in chunks that each leave their
file behind; `build` then takes every paraphrase of the finished chunks (added or rejected in
its chunk) and applies the label filter again, fitted on all of their original rows, as one
`tailor data augment --paraphrase` pass over those rows would. It writes runs/para/base.parquet
(the original rows) and runs/para/para.parquet (the originals plus the paraphrases kept).
The tweets are those of bench/label_noise.py's shuffle, with the labels as given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from label_noise import tweets

from tailorkit.data.augment.paraphrase import label_agreement

ROOT = Path("runs/para")
CHUNK = 20


def prepare() -> None:
    train, validation, test = tweets()
    low = train.iloc[:200].copy()
    low["text"] = low["text"].str.replace(r"[\r\n]+", " ", regex=True)  # CSV readers split on \r
    (ROOT / "chunks").mkdir(parents=True, exist_ok=True)
    for i in range(0, len(low), CHUNK):
        low.iloc[i:i + CHUNK].to_csv(ROOT / "chunks" / f"c{i // CHUNK:02d}.csv", index=False)
    validation.iloc[:200].to_parquet(ROOT / "validation200.parquet", index=False)
    test.to_parquet(ROOT / "test.parquet", index=False)
    print(f"wrote {len(low) // CHUNK} chunks of {CHUNK} tweets, 200 validation and {len(test)} test tweets "
          f"under {ROOT}")


def build(n: int) -> None:
    base, para = [], {}
    for i in range(n):
        chunk = pd.read_csv(ROOT / "chunks" / f"c{i:02d}.csv")
        changes = pd.read_csv(ROOT / "chunks" / f"c{i:02d}-para.changes.csv", keep_default_na=False)
        for _, c in changes[changes.reason.str.startswith("paraphrase")].iterrows():
            para[i * CHUNK + c.row - 1] = c.text
        base.append(chunk)
    rows = pd.concat(base, ignore_index=True)[["text", "label"]]
    texts, labels = rows.text.astype(str).tolist(), rows.label.astype(str).tolist()
    agrees = label_agreement(texts, labels, [para.get(k, texts[k]) for k in range(len(rows))])
    kept = [k for k in sorted(para) if agrees[k]]
    added = pd.DataFrame({"text": [para[k] for k in kept], "label": [labels[k] for k in kept]})
    out = pd.concat([rows, added], ignore_index=True)
    rows.to_parquet(ROOT / "base.parquet", index=False)
    out.to_parquet(ROOT / "para.parquet", index=False)
    print(f"{len(rows)} rows, {len(para)} paraphrases, {len(kept)} kept by the label filter; "
          f"para.parquet {len(out)} rows; epochs for as many steps as 3 over it: "
          f"{round(3 * len(out) / len(rows))}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare")
    b = sub.add_parser("build")
    b.add_argument("chunks", type=int, help="how many finished chunks to use, from the first")
    args = p.parse_args()
    prepare() if args.command == "prepare" else build(args.chunks)


if __name__ == "__main__":
    main()
