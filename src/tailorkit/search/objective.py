"""One trial: the recipe with the trial's values, trained as a normal run (k runs with
cross-validation), reporting its validation metric at every evaluation so that the pruner
can stop it there.

The trial's value is the validation metric of the weights the run keeps (`summary.json`),
the same number `tailor train` reports, so the best recipe re-trains to it. A multi-objective
study gets one value per objective: validation metrics, and costs the run recorded
(`tailorkit.costs`); it is never pruned.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from tailorkit.config.search import COSTS
from tailorkit.config.space import apply_params
from tailorkit.costs import run_cost
from tailorkit.errors import TailorError
from tailorkit.pipeline import train as train_run
from tailorkit.pipeline.run_dir import SUMMARY
from tailorkit.recipe import recipe_from_dict
from tailorkit.runtime import reset_peak_rss
from tailorkit.search.folds import fold_sections
from tailorkit.train.checkpoint import remove_checkpoints
from tailorkit.train.loop import Interrupted

TRIALS = "trials"


def trial_dir(study_dir: Path, number: int) -> Path:
    return study_dir / TRIALS / f"{number:04d}"


def trial_recipe(recipe, params: dict[str, Any], output_dir: Path | str, threads: int | None = None,
                 progress: bool | None = None) -> dict:
    """The plain recipe (no search block) a trial trains: the study's recipe with the trial's
    values. `threads` fills an unset train.threads (workers share the cores); `progress`
    turns the bar off when several workers print at once."""
    raw = apply_params(recipe.model_dump(mode="json", exclude={"search"}), params)
    raw["output_dir"] = str(output_dir)
    if threads is not None and raw["train"].get("threads") is None:
        raw["train"]["threads"] = threads
    if progress is False:
        raw["train"]["progress"] = False
    return raw


class Reporter:
    """The Trainer's evaluation hook for one trial: reports the metric at the steps counted
    over the whole trial (fold after fold) and stops the run when the pruner says so."""

    def __init__(self, trial, metric: str | None) -> None:
        self.trial, self.metric = trial, metric
        self.offset = 0  # steps of the folds already finished
        self.steps = 0  # optimiser steps taken by this trial so far

    def __call__(self, step: int, metrics: dict) -> None:
        import optuna

        self.steps = self.offset + step
        if self.metric is None:  # several objectives: Optuna prunes none, the steps are counted
            return
        value = metrics.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        self.trial.report(float(value), self.steps)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {self.steps}")


def run_trial(trial, recipe, study_dir: Path, threads: int | None = None,
              progress: bool | None = None) -> list[float]:
    """Train the trial; return its values, one per objective. Raises optuna.TrialPruned when
    pruned. Steps taken, run directory and, with folds, each fold's value are kept as the
    trial's user attributes."""
    import optuna


    cfg = recipe.search
    folder = trial_dir(study_dir, trial.number)
    raw = trial_recipe(recipe, trial.params, folder, threads, progress)
    trial.set_user_attr("run_dir", str(folder.relative_to(study_dir)))
    if threads is not None:  # the best recipe repeats them: thread counts change the last digits
        trial.set_user_attr("threads", threads)
    runs = [raw]
    if cfg.cv_folds:
        runs = [{**raw, "data": data, "output_dir": str(folder / f"fold-{i}")}
                for i, data in enumerate(fold_sections(recipe, study_dir, raw["data"]))]
    reporter, values = Reporter(trial, None if cfg.multi else cfg.metric), []
    for run in runs:
        reset_peak_rss()  # this run's peak memory, not an earlier trial's in this process
        try:
            summary = _train(run, reporter)
        except optuna.TrialPruned:
            trial.set_user_attr("steps", reporter.steps)
            # A pruned run will not be resumed: drop its checkpoint, keep its metrics.
            remove_checkpoints(Path(run["output_dir"]))
            raise
        except Interrupted as stop:  # Ctrl-C or kill: the steps it did take count in the study
            trial.set_user_attr("steps", reporter.offset + stop.step)
            raise
        reporter.offset += summary["steps"]
        reporter.steps = reporter.offset
        values.append([objective_value(Path(run["output_dir"]), summary, name)
                       for name in cfg.objective_names()])
    trial.set_user_attr("steps", reporter.steps)
    if cfg.cv_folds:
        first = [v[0] for v in values]
        trial.set_user_attr("fold_values", first if not cfg.multi else values)
        trial.set_user_attr("std", statistics.pstdev(first) if not cfg.multi else
                            [statistics.pstdev(column) for column in zip(*values, strict=True)])
    return [statistics.fmean(column) for column in zip(*values, strict=True)]


def objective_value(run_dir: Path, summary: dict, name: str) -> float:
    """A validation metric of the run, or one of its costs."""
    if name not in COSTS:
        return summary["validation"][name]
    value = run_cost(run_dir, name)
    if value is None:
        raise TailorError(f"search.objectives: {name} cannot be measured for the run in {run_dir} "
                          "(latency needs a text task with single texts)")
    return value


def _train(raw: dict, reporter: Reporter) -> dict:
    recipe = recipe_from_dict(raw, source=f"trial recipe {raw['output_dir']}")
    run_dir = train_run(recipe, overwrite=True, on_evaluate=reporter)
    return json.loads((run_dir / SUMMARY).read_text())
