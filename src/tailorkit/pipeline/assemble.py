"""What a run trains on, assembled: the task's data and base model, then the methods in order,
then the loop that trains it (the methods may bring their own)."""

from __future__ import annotations

import functools
from pathlib import Path

from tailorkit.config.recipe import Recipe
from tailorkit.data.feature_cache import split_fingerprint
from tailorkit.device import check_precision, resolve
from tailorkit.methods import build_methods, finish_methods
from tailorkit.models.quantize import NF4Spec, require_bitsandbytes
from tailorkit.pipeline.load import load_run
from tailorkit.tasks import task_of
from tailorkit.train.loop import Trainer
from tailorkit.train.setup import Setup


def setup_run(recipe: Recipe, run_dir: Path) -> Setup:
    """Data -> base model -> methods, in recipe order; on train.device from the base model on, so
    what methods compute while adapting (cached features, a teacher's logits) runs there too."""
    task = task_of(recipe)
    methods = build_methods(recipe.methods)
    device = resolve(recipe.train.device)  # a device that is not here fails before any loading
    check_precision(recipe.train.precision, device)
    if recipe.model.quantize_base == "nf4":
        require_bitsandbytes()  # before minutes of loading
    setup = task.prepare(recipe, run_dir, augment=not any(m.fixed_inputs for m in methods))
    setup.handle.model.to(device)
    fingerprint = {name: split_fingerprint(split) for name, split in setup.splits.items()}
    setup.methods = methods
    setup.load_run = functools.partial(load_run, trust_remote_code=recipe.model.trust_remote_code)
    for method in methods:
        setup = method.adapt(setup, task, recipe)
    finish_methods(setup.handle, methods, NF4Spec.of(recipe))
    setup.handle.model.to(device)  # what the methods added (heads, adapters) follows
    setup.fingerprint = fingerprint  # of the data as read (a method may replace the splits)
    return setup


def make_trainer(setup: Setup, recipe: Recipe, run_dir: Path):
    """The first method's own loop (a scikit-learn head fits once), else the Trainer."""
    for method in setup.methods:
        trainer = method.make_trainer(setup, recipe, run_dir)
        if trainer is not None:
            return trainer
    return Trainer(setup.handle, setup.methods, setup.splits["train"], setup.splits["validation"],
                   setup.train, setup.loss_fn, setup.labels, run_dir, recipe.seed,
                   tuple(task_of(recipe).headline))
