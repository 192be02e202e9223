"""What a report directory holds: a study, a search, a folder of compressed runs, or one run;
each as a list of entries (strategies) and the test metric to compare them by."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from tailorkit.errors import TailorError
from tailorkit.pipeline.run_dir import SUMMARY
from tailorkit.study.plan import PLAN, read_plan
from tailorkit.study.results import Entry
from tailorkit.study.run import study_entries


def collect(folder: Path) -> tuple[str, str, list[Entry]]:
    """(kind, metric, entries) of `folder`; a TailorError when it is none of the four."""
    if not folder.is_dir():
        raise TailorError(f"{folder}: no such folder; give a run, search or study directory")
    if (folder / PLAN).is_file():
        return "study", read_plan(folder).metric, study_entries(folder)
    if (folder / "study.yaml").is_file() and (folder / "trials").is_dir():
        trials = sorted((d for d in (folder / "trials").iterdir() if (d / "recipe.yaml").is_file()),
                        key=lambda d: (len(d.name), d.name))
        entries = [Entry(d.name, [d]) for d in trials]
        return "search", _metric(trials), entries
    if (folder / "recipe.yaml").is_file():
        return "run", _metric([folder]), [Entry(folder.name, [folder])]
    children = sorted(d for d in folder.iterdir() if (d / "recipe.yaml").is_file())
    if children:
        return "runs", _metric(children), [Entry(d.name, [d]) for d in children]
    raise TailorError(f"{folder}: not a run, search or study directory (no recipe.yaml, study.yaml or "
                      f"{PLAN})")


def _metric(run_dirs: list[Path]) -> str:
    """accuracy where the runs have it (classifiers), else the loss."""
    for d in run_dirs:
        if (d / SUMMARY).is_file():
            test = json.loads((d / SUMMARY).read_text()).get("test") or {}
            return "accuracy" if "accuracy" in test else "loss"
    return "accuracy"


def search_front(folder: Path) -> tuple[list[dict], list[dict]] | None:
    """(objectives, complete trials, repeats left out) of a multi-objective search directory, from
    the study.json and trials.csv that `tailor tune` writes; None for any other folder. Each trial is
    {number, pareto, <objective>: value, <parameter>: value}."""
    summary_path, table = folder / "study.json", folder / "trials.csv"
    if not summary_path.is_file() or not table.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    if not summary.get("objectives"):
        return None
    frame = pd.read_csv(table)
    frame = frame[frame["state"] == "complete"]
    if "duplicate_of" in frame:  # a repeat of a point shows once, as the trial that trained it
        frame = frame[frame["duplicate_of"].isna()]
    frame = frame.drop(columns=["state", "error", "run_dir"], errors="ignore")
    trials = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in frame.to_dict("records")]
    return summary["objectives"], trials


def recipe_text(entry: Entry) -> str:
    d = (entry.run_dirs or [None])[0]
    return (d / "recipe.yaml").read_text() if d is not None and (d / "recipe.yaml").is_file() else ""


def curves(run_dir: Path, metric: str) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(validation metric by step, train loss by step) from the run's metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    val, loss = [], []
    if not path.is_file():
        return val, loss
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("kind") == "eval" and record.get("split") == "validation" and \
                isinstance(record.get(metric), int | float):
            val.append((record["step"], record[metric]))
        elif record.get("kind") == "train" and isinstance(record.get("loss"), int | float):
            loss.append((record["step"], record["loss"]))
    return val, loss


def recipe_yaml(text: str) -> dict:
    return yaml.safe_load(text) or {}
