"""Metric names and which way is better: early stopping and search are configured in these."""

from __future__ import annotations

HIGHER_IS_BETTER = {"accuracy", "r2"} | {
    f"{m}_{a}" for m in ("precision", "recall", "f1") for a in ("macro", "micro", "weighted")
}
LOWER_IS_BETTER = {"loss", "mse", "rmse", "mae", "perplexity"}
CLASSIFICATION_METRICS = ["loss", "accuracy"] + sorted(HIGHER_IS_BETTER - {"accuracy", "r2"})
REGRESSION_METRICS = ["loss", "mse", "rmse", "mae", "r2"]
LANGUAGE_MODEL_METRICS = ["loss", "perplexity"]
