"""`tailor tune`: run or resume a recipe's study, and report on it."""

from __future__ import annotations

import time
from pathlib import Path

from tailorkit.config.recipe import Recipe
from tailorkit.errors import TailorError
from tailorkit.search import report, study, worker
from tailorkit.search.folds import fold_sections


def tune(recipe: Recipe, workers: int = 1) -> Path:
    """Run (or resume) the recipe's `search:` on Optuna in `output_dir`; returns the study
    directory with its trials, report and best recipe."""
    if recipe.search is None:
        raise TailorError("tune: the recipe has no search: block; add one (see the README's "
                          "Hyperparameter search) or run it with tailor train")
    if workers < 1:
        raise TailorError(f"--workers must be at least 1 (got {workers})")
    started = time.time()
    study_dir = study.claim_study_dir(recipe)
    earlier = report.wall_seconds_so_far(study_dir)  # a resumed study adds this session's time
    study.open_study(recipe, study_dir, create=True)  # once, here, before workers race to it
    if recipe.search.cv_folds:
        fold_sections(recipe, study_dir)  # written once, before any worker reads them
    deadline = started + recipe.search.timeout if recipe.search.timeout else None
    try:
        worker.run_workers(recipe, study_dir, workers, deadline)
    finally:  # also after Ctrl-C or an error: the report shows what is done so far
        report.write_report(recipe, study_dir, earlier + time.time() - started)
    return study_dir


def tune_status(study_dir: str | Path) -> str:
    """Progress of a study directory, from its storage: counts, best so far, running trials."""
    return report.status_text(study_dir)
