"""Text regression: one number per text (or text pair), MSE or MAE, trained on standardised
targets (models/target_scaling.py)."""

from __future__ import annotations

from pathlib import Path

from tailorkit.config.metrics import REGRESSION_METRICS
from tailorkit.config.recipe import Recipe
from tailorkit.models.target_scaling import TargetScaling, output_layer, scale_output
from tailorkit.tasks.base import register
from tailorkit.tasks.text_table import TextTableTask
from tailorkit.train.setup import Setup


@register
class Regression(TextTableTask):
    name = "regression"
    summary = "text regression (a numeric label column; one output)"
    output = "scalar"
    losses = ("auto", "mse", "mae")
    metrics = REGRESSION_METRICS
    headline = ["mse", "mae", "r2", "loss"]
    ignores = {f"data.augment.{name}": "regression targets have no classes to even out"
               for name in ("balance", "max_per_class")}

    def prepare(self, recipe: Recipe, run_dir: Path, augment: bool = True) -> Setup:
        setup = super().prepare(recipe, run_dir, augment)
        layer = output_layer(setup.handle.model, setup.handle.head_modules)
        if layer is not None:
            scaling = TargetScaling.fit(setup.splits["train"].targets, centre=layer.bias is not None)
            scale_output(layer, scaling)
            setup.loss_fn.target_std = scaling.std
            setup.info["target_scaling"] = {"mean": scaling.mean, "std": scaling.std}
        return setup
