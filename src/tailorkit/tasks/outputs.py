"""The test split's predictions table, shared by the tasks that predict classes or values."""

from __future__ import annotations

from pathlib import Path

from tailorkit.config.recipe import Recipe
from tailorkit.data.tables import write_csv
from tailorkit.evaluate.evaluator import predict_logits, prediction_frame, score
from tailorkit.train.setup import Setup

PREDICTIONS = "predictions_test.csv"


def write_predictions(setup: Setup, recipe: Recipe, run_dir: Path, name_column: str = "text") -> dict:
    """Test metrics; writes predictions_test.csv (one row per test example)."""
    t, handle = recipe.train, setup.handle
    logits = predict_logits(handle, setup.splits["test"], t.eval_batch_size, t.precision)
    frame = prediction_frame(handle.output, setup.test_names, logits, setup.labels, setup.test_targets,
                             setup.test_pairs)
    write_csv(frame.rename(columns={"text": name_column}), run_dir / PREDICTIONS)
    return score(handle.output, logits, setup.test_targets, setup.labels, setup.loss_fn)
