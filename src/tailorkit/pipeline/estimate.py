"""`tailor recipe validate --estimate`: a recipe's training peak memory, before any training."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from tailorkit.config.recipe import Recipe
from tailorkit.pipeline.assemble import make_trainer, setup_run
from tailorkit.recipe import resolve_defaults
from tailorkit.runtime import default_threads
from tailorkit.train.loop import Trainer


def estimate_recipe(recipe: Recipe) -> str:
    """Assemble the run (data, model, methods, loop) in a temporary folder, without sample
    generations or trackers, and estimate the peak of its training steps."""
    recipe = resolve_defaults(recipe)
    recipe = recipe.model_copy(update={
        "generation": recipe.generation.model_copy(update={"samples": 0}),
        "train": recipe.train.model_copy(update={"report_to": []})})
    torch.set_num_threads(recipe.train.threads or default_threads())
    with tempfile.TemporaryDirectory(prefix="tailor-estimate-") as folder:
        setup = setup_run(recipe, Path(folder))
        trainer = make_trainer(setup, recipe, Path(folder))
        if not isinstance(trainer, Trainer):
            return "memory estimate: this recipe fits a scikit-learn head once; no gradient steps to estimate"
        estimate, length = trainer.memory_estimate()
        trainer.sink.close()
    return estimate.line(recipe.train.batch_size, length)
