"""One row per variant, read from its runs' summary.json: the metric's mean ± std over seeds
and what the variant cost. A run with a compress: section is judged by its last compression
step (the model it ships): that step's test metric, size on disk and latency. A compression
step's own folder (a row of a report over a compress output folder) is judged as itself."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tailorkit.config.metrics import LOWER_IS_BETTER
from tailorkit.costs import peak_memory_mb, run_latency_ms
from tailorkit.pipeline.run_dir import MODEL, SUMMARY

COLUMNS = ["variant", "runs", "metric_mean", "metric_std", "trainable", "trainable_pct", "train_seconds",
           "samples_per_second", "peak_memory_mb", "artefact_mb", "latency_ms", "error"]


@dataclass
class Entry:
    """A strategy in a report: its runs (one per seed) and the error of a failed one."""
    name: str
    run_dirs: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def final_dir(run_dir: Path) -> Path:
    """The run whose model the variant ships: the last compression step's for a run that trained
    with a compress: section, or the run itself. A compression step's folder also has a compress:
    section in its recipe.yaml (the steps done so far); it is its own final run, never the last
    step beside it."""
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    compress = recipe.get("compress")
    if not compress or _compression_step(run_dir):
        return run_dir
    out = Path(compress.get("output_dir") or f"{run_dir}-compressed")
    steps = sorted((p for p in out.iterdir() if (p / SUMMARY).is_file()),
                   key=lambda p: int(p.name.split("-")[0])) if out.is_dir() else []
    return steps[-1] if steps else run_dir


def _compression_step(run_dir: Path) -> bool:
    """A folder that a compression step wrote (its summary names the run it was compressed from)."""
    summary = run_dir / SUMMARY
    return summary.is_file() and "compressed_from" in json.loads(summary.read_text())


def finished(entry: Entry) -> list[Path]:
    return [d for d in entry.run_dirs if (d / SUMMARY).is_file()]


def test_metric(run_dir: Path, metric: str) -> float | None:
    summary = json.loads((final_dir(run_dir) / SUMMARY).read_text())
    value = (summary.get("test") or {}).get(metric)
    return float(value) if isinstance(value, int | float) else None


def row(entry: Entry, metric: str, measure_latency: bool = True) -> dict:
    runs = finished(entry)
    out = dict.fromkeys(COLUMNS)
    error = "; ".join(e.splitlines()[0] for e in entry.errors) or None
    out.update(variant=entry.name, runs=len(runs), error=error)
    if not runs:
        return out
    summaries = [json.loads((d / SUMMARY).read_text()) for d in runs]
    finals = [final_dir(d) for d in runs]
    values = [v for v in (test_metric(d, metric) for d in runs) if v is not None]
    params = summaries[0].get("parameters") or {}
    out.update(
        metric_mean=statistics.fmean(values) if values else None,
        metric_std=statistics.stdev(values) if len(values) > 1 else None,
        trainable=params.get("trainable"), trainable_pct=params.get("trainable_pct"),
        train_seconds=_mean(s.get("train_seconds") for s in summaries),
        samples_per_second=_mean(s.get("samples_per_second") for s in summaries),
        peak_memory_mb=_mean(peak_memory_mb(s) for s in summaries),
        artefact_mb=_mean(_artefact(d) for d in finals),
        latency_ms=_mean(run_latency_ms(d) for d in finals) if measure_latency else None,
    )
    return out


def _artefact(run_dir: Path) -> float | None:
    summary = json.loads((run_dir / SUMMARY).read_text())
    if "artefact_mb" in summary:
        return summary["artefact_mb"]
    if "weights_mb" in summary:
        return summary["weights_mb"]
    model = run_dir / MODEL
    if not model.is_dir():
        return None
    return round(sum(f.stat().st_size for f in model.rglob("*") if f.is_file()) / 2**20, 3)


def _mean(values) -> float | None:
    values = [float(v) for v in values if isinstance(v, int | float)]
    return statistics.fmean(values) if values else None


def best(rows: list[dict], metric: str) -> dict | None:
    scored = [r for r in rows if r["metric_mean"] is not None]
    sign = -1 if metric in LOWER_IS_BETTER else 1
    return max(scored, key=lambda r: sign * r["metric_mean"]) if scored else None
