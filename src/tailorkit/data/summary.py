"""What a run is about to train on, in a few console lines: rows per split, the training
classes, and how long the examples are against max_length."""

from __future__ import annotations

import numpy as np


def data_summary(splits: dict, labels: list[str], max_length: int | None) -> list[str]:
    lines = ["data: " + "  ".join(f"{name} {len(split):,}" for name, split in splits.items())]
    train = splits["train"]
    targets = np.asarray(getattr(train, "targets", []))
    if labels and targets.ndim == 1 and targets.dtype.kind in "iu":
        counts = np.bincount(targets, minlength=len(labels))
        lines.append("classes (train): " + ", ".join(f"{name} {n:,}" for name, n in zip(labels, counts,
                                                                                         strict=True)))
    lengths = getattr(train, "lengths", None) if hasattr(train, "input_ids") else None  # text only
    if lengths is not None and len(lengths) and max_length:
        median, p95 = np.percentile(lengths, [50, 95])
        cut = float(np.mean(np.asarray(lengths) >= max_length))
        lines.append(f"tokens per example (train): median {median:.0f}, 95th percentile {p95:.0f}, "
                     f"max {int(np.max(lengths))}; {cut:.1%} reach max_length {max_length} (cut there)")
    return lines
