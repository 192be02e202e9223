"""The comparison table of docs/search.md, from finished study directories.

    .venv/bin/python bench/search_table.py runs/search-grid runs/search-random \
        runs/search-tpe runs/search-tpe-hyperband

The first directory is the reference (exhaustive grid). Steps are the optimiser steps the
trials took, as each study counted them (study.json); wall time is the whole `tailor tune`
command, from study.json. It also prints the grid's landscape (the metric at every point:
one row per value of the first parameter, one column per combination of the others).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from tailorkit.search.report import markdown_table
from tailorkit.search.study import read_study_recipe


def main(dirs: list[str]) -> None:
    rows, reference = [], None
    for d in map(Path, dirs):
        s = json.loads((d / "study.json").read_text())
        table = pd.read_csv(d / "trials.csv")
        metric, best = s["metric"], s["best"]
        if reference is None:
            reference = s
        counts = s["trials"]
        trained = int((table.duplicate_of.isna()).sum()) if "duplicate_of" in table else len(table)
        rows.append({
            "strategy": f"{s['sampler']}" + ("" if s["pruner"] == "none" else f" + {s['pruner']}")
                        + ("" if s["sampler"] == "grid" else f", seed {read_study_recipe(d).search.seed}"),
            "trials": f"{len(table)} ({counts['complete']} complete, {counts['pruned']} pruned, "
                      f"{len(table) - trained} repeat{'' if len(table) - trained == 1 else 's'})",
            f"best validation {metric}": f"{best['value']:.4f}",
            "gap to grid (points)": f"{100 * (best['value'] - reference['best']['value']):+.2f}",
            "best point": ", ".join(f"{k.split('.')[-1]}={v:g}" for k, v in best["params"].items()),
            "training steps": s["total_steps"],
            "% of grid's steps": f"{100 * s['total_steps'] / reference['total_steps']:.0f}%",
            "steps until within 1 point of grid's best": _steps_to_reach(table, metric, reference),
            "wall time": f"{s['wall_seconds'] / 60:.1f} min",
        })
    print(markdown_table(pd.DataFrame(rows)))
    grid = pd.read_csv(Path(dirs[0]) / "trials.csv")
    params = [c for c in grid.columns if "." in c]
    metric = reference["metric"]
    if len(params) >= 2:  # rows: the first parameter; columns: every value of the others
        print()
        pivot = grid.pivot_table(index=params[0], columns=params[1:], values=metric)
        pivot.columns = [", ".join(f"{p.split('.')[-1]}={v:g}" for p, v in
                                   zip(params[1:], key if isinstance(key, tuple) else (key,),
                                       strict=True))
                         for key in pivot.columns]
        print(markdown_table(pivot.reset_index()))


def _steps_to_reach(table: pd.DataFrame, metric: str, reference: dict) -> str:
    """Training steps spent, trial after trial, until a complete trial comes within 1 point
    (0.01) of the grid's best: how soon the search would have been good enough."""
    sign = 1 if reference["direction"] == "maximize" else -1
    target = reference["best"]["value"] - sign * 0.01
    spent = 0
    for row in table.sort_values("number").itertuples(index=False):
        spent += int(row.steps)
        value = getattr(row, metric)
        if row.state == "complete" and sign * (value - target) >= 0:
            return f"{spent} ({100 * spent / reference['total_steps']:.0f}%), trial {row.number}"
    return "not reached"


if __name__ == "__main__":
    main(sys.argv[1:])
