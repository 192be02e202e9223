"""Text regression: one number per text (or text pair), MSE or MAE."""

from __future__ import annotations

from tailorkit.config.metrics import REGRESSION_METRICS
from tailorkit.tasks.base import register
from tailorkit.tasks.text_table import TextTableTask


@register
class Regression(TextTableTask):
    name = "regression"
    summary = "text regression (a numeric label column; one output)"
    output = "scalar"
    losses = ("auto", "mse", "mae")
    metrics = REGRESSION_METRICS
    headline = ["mse", "mae", "r2", "loss"]
