"""The results table as terminal text, Markdown and CSV (one row per variant)."""

from __future__ import annotations

import csv
import io

from tailorkit.study.results import COLUMNS

HEADERS = {"variant": "variant", "runs": "runs", "metric": "{metric}", "trainable": "trainable params",
           "train_seconds": "train s", "samples_per_second": "samples/s", "peak_memory_mb": "peak MB",
           "artefact_mb": "size MB", "latency_ms": "latency ms", "error": "error"}


def cells(row: dict) -> dict[str, str]:
    """The row's values as text, one per display column; a missing value is '-'."""
    def num(value, fmt):
        return "-" if value is None else format(value, fmt)

    metric = num(row["metric_mean"], ".4f")
    if row["metric_std"] is not None:
        metric += f" ± {row['metric_std']:.4f}"
    trainable = "-" if row["trainable"] is None else f"{row['trainable']:,} ({row['trainable_pct']:.2f}%)"
    return {"variant": row["variant"], "runs": str(row["runs"]), "metric": metric, "trainable": trainable,
            "train_seconds": num(row["train_seconds"], ".1f"),
            "samples_per_second": num(row["samples_per_second"], ".1f"),
            "peak_memory_mb": num(row["peak_memory_mb"], ".0f"),
            "artefact_mb": num(row["artefact_mb"], ".2f"),
            "latency_ms": num(row["latency_ms"], ".2f"), "error": row["error"] or ""}


def _headers(metric: str) -> list[str]:
    return [h.format(metric=metric) for h in HEADERS.values()]


def text_table(rows: list[dict], metric: str) -> str:
    table = [_headers(metric)] + [list(cells(r).values()) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[dict], metric: str) -> str:
    def line(values):
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    head = _headers(metric)
    return "\n".join([line(head), line(["---"] * len(head))] + [line(list(cells(r).values())) for r in rows])


def csv_table(rows: list[dict], metric: str) -> str:
    """Raw numbers (not rounded), the metric's name in its columns."""
    out = io.StringIO()
    names = [c.replace("metric", metric) if c.startswith("metric") else c for c in COLUMNS]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(names)
    for r in rows:
        writer.writerow(["" if r[c] is None else r[c] for c in COLUMNS])
    return out.getvalue()
