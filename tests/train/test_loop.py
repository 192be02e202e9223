"""The training loop: early stopping, determinism, the metrics log, regression end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from tailorkit import api
from tailorkit.recipe import recipe_from_dict
from tailorkit.train import loop


def _records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _with_train(recipe: dict, **train) -> dict:
    return {**recipe, "train": {**recipe["train"], **train}}


# -- early stopping -----------------------------------------------------------------------------------

@pytest.fixture
def scripted_metric(monkeypatch):
    """Make validation report scripted values for one metric; remember the weights at each eval."""
    state = {"values": [], "weights": [], "model": None}
    real_evaluate = loop.evaluate_split

    def fake_evaluate(handle, data, labels, loss_fn, batch_size, bf16=False, forward=None, lm_head_chunk=0):
        metrics = real_evaluate(handle, data, labels, loss_fn, batch_size, bf16, forward, lm_head_chunk)
        i = len(state["weights"])
        state["weights"].append({k: v.clone() for k, v in state["model"].state_dict().items()})
        metrics[state["metric"]] = state["values"][i]
        return metrics

    monkeypatch.setattr(loop, "evaluate_split", fake_evaluate)
    return state


@pytest.mark.parametrize(("metric", "values", "patience", "min_delta", "stop_at", "best_at"), [
    ("loss", [1.0, 0.5, 0.6, 0.55, 0.1, 0.1], 2, 0.0, 4, 2),
    ("loss", [1.0, 0.9, 0.8, 0.9, 0.7, 0.8, 0.85, 0.75, 0.0], 3, 0.0, 8, 5),  # resets
    ("accuracy", [0.5, 0.7, 0.74, 0.69, 0.99], 2, 0.05, 4, 2),
    ("f1_macro", [0.3, 0.2, 0.9], 1, 0.0, 2, 1),
])
def test_early_stopping_stops_after_patience_and_restores_the_best(
        tiny_recipe, make_trainer, scripted_metric, metric, values, patience, min_delta, stop_at, best_at):
    recipe = _with_train(tiny_recipe, eval_steps=1, early_stopping={
        "metric": metric, "patience": patience, "min_delta": min_delta})
    trainer = make_trainer(recipe)
    scripted_metric.update(values=values, metric=metric, model=trainer.handle.model)
    state = trainer.fit()
    assert state.stopped_early and state.step == stop_at
    assert len(scripted_metric["weights"]) == stop_at  # no evaluation after stopping
    best = scripted_metric["weights"][best_at - 1]
    final = trainer.handle.model.state_dict()
    assert all(torch.equal(final[k], best[k]) for k in best), "best weights not restored"
    last = scripted_metric["weights"][-1]
    assert any(not torch.equal(final[k], last[k]) for k in last)
    assert state.best_metric == values[best_at - 1]
    assert trainer.last_val[metric] == values[best_at - 1]  # what the summary reports
    evals = [r for r in _records(trainer.run_dir) if r["kind"] == "eval"]
    assert [r[metric] for r in evals] == values[:stop_at]


def test_no_early_stop_while_improving(tiny_recipe, make_trainer, scripted_metric):
    trainer = make_trainer(_with_train(tiny_recipe, eval_steps=1, max_steps=6,
                                       early_stopping={"metric": "loss", "patience": 1}))
    scripted_metric.update(values=[1.0, 0.9, 0.8, 0.7, 0.6, 0.5], metric="loss", model=trainer.handle.model)
    state = trainer.fit()
    assert not state.stopped_early and state.step == 6


def test_early_stopped_run_summary(tiny_recipe, scripted_metric, monkeypatch):
    recipe = recipe_from_dict(_with_train(tiny_recipe, eval_steps=2, early_stopping={"patience": 1}))
    real_init = loop.Trainer.__init__

    def init(self, handle, *args, **kwargs):
        real_init(self, handle, *args, **kwargs)
        scripted_metric["model"] = handle.model

    monkeypatch.setattr(loop.Trainer, "__init__", init)
    scripted_metric.update(values=[0.7, 0.6, 0.65] + [0.6] * 5, metric="loss")
    run = api.train(recipe)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stopped_early"] is True and summary["steps"] == 6
    assert summary["validation"]["loss"] == 0.6
    saved = load_file(str(run / "model" / "model.safetensors"))
    best = scripted_metric["weights"][1]
    assert all(torch.equal(saved[k], best[k]) for k in saved)


# -- determinism ----------------------------------------------------------------------------------------

def _weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model" / "model.safetensors"))


def test_same_seed_same_run_different_seed_different_run(tiny_recipe, tmp_path):
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        recipe = {**tiny_recipe, "seed": seed, "output_dir": str(tmp_path / name)}
        runs[name] = api.train(recipe_from_dict(recipe))
    a, b, c = (_weights(runs[n]) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    summaries = {n: json.loads((runs[n] / "summary.json").read_text()) for n in "abc"}
    assert summaries["a"]["test"] == summaries["b"]["test"]
    assert summaries["a"]["test"]["loss"] != summaries["c"]["test"]["loss"]
    losses = {n: [r["loss"] for r in _records(runs[n]) if r["kind"] == "train"] for n in "abc"}
    assert losses["a"] == losses["b"] != losses["c"]


# -- metrics.jsonl --------------------------------------------------------------------------------------

def _steps_per_epoch(run, batch_size: int = 8) -> int:
    return math.ceil(json.loads((run / "summary.json").read_text())["data"]["train"] / batch_size)


def test_metrics_log_has_step_and_eval_records(tiny_recipe):
    run = api.train(recipe_from_dict(tiny_recipe))  # 2 epochs
    per_epoch = _steps_per_epoch(run)
    records = _records(run)
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 2 * per_epoch + 1))
    for r in train:
        assert math.isfinite(r["loss"]) and r["loss"] > 0
        assert 0 < r["epoch"] <= 2
    # each step's samples_per_s is its batch over its own time: the step times add up to the run's
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data"]["train"] == 8 * per_epoch  # every step is one full batch of 8
    step_seconds = sum(8 / r["samples_per_s"] for r in train)
    assert summary["samples_per_second"] == pytest.approx(len(train) * 8 / step_seconds, rel=1e-3)
    lrs = [r["lr"] for r in train]
    # the rate each step used: linear decay from the peak, never the post-schedule 0
    assert lrs == sorted(lrs, reverse=True) and lrs[0] == 5e-3 and 0 < lrs[-1] < lrs[-2]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [(r["step"], r["split"]) for r in evals] == [
        (per_epoch, "validation"), (2 * per_epoch, "validation"), (2 * per_epoch, "test")]
    for r in evals:
        assert {"loss", "accuracy", "f1_macro", "precision_weighted", "recall_micro"} <= set(r)
        assert "confusion_matrix" not in r  # only scalars go to the log
    steps = [r["step"] for r in records]
    assert steps == sorted(steps)


def test_eval_steps_and_max_steps(tiny_recipe):
    run = api.train(recipe_from_dict(_with_train(tiny_recipe, eval_steps=3, max_steps=7, epochs=5)))
    records = _records(run)
    assert max(r["step"] for r in records if r["kind"] == "train") == 7
    val = [r["step"] for r in records if r["kind"] == "eval" and r["split"] == "validation"]
    assert val == [3, 6, 7]  # every 3 steps, then once at the end
    assert json.loads((run / "summary.json").read_text())["steps"] == 7


def test_fractional_epochs(tiny_recipe):
    run = api.train(recipe_from_dict(_with_train(tiny_recipe, epochs=0.5)))
    steps = json.loads((run / "summary.json").read_text())["steps"]
    assert steps == math.ceil(0.5 * _steps_per_epoch(run)) and steps >= 2


# -- regression -------------------------------------------------------------------------------------------

def test_regression_end_to_end(tiny_recipe):
    recipe = {**tiny_recipe, "task": "regression",
              "data": {**tiny_recipe["data"], "label_column": "score"},
              "train": {**tiny_recipe["train"], "epochs": 10, "lr": 2e-3,
                        "early_stopping": {"metric": "mae", "patience": 5}}}
    run = api.train(recipe_from_dict(recipe))
    summary = json.loads((run / "summary.json").read_text())
    test = summary["test"]
    assert {"loss", "mse", "rmse", "mae", "r2"} <= set(test) and "accuracy" not in test
    assert summary["labels"] == []
    frame = pd.read_csv(run / "predictions_test.csv")
    assert list(frame.columns) == ["text", "target", "prediction"]
    err = frame.prediction - frame.target
    assert test["mse"] == pytest.approx(float(np.mean(err ** 2)), rel=1e-4)
    assert test["mae"] == pytest.approx(float(np.mean(err.abs())), rel=1e-4)
    assert test["rmse"] == pytest.approx(test["mse"] ** 0.5)
    variance = float(np.mean((frame.target - frame.target.mean()) ** 2))
    assert test["r2"] == pytest.approx(1 - test["mse"] / variance, rel=1e-3)
    train_losses = [r["loss"] for r in _records(run) if r["kind"] == "train"]
    # it learns: 0.086 -> 0.004 at this seed; 3 epochs barely moved it, at any of seeds 0-5
    assert np.mean(train_losses[-5:]) < 0.5 * np.mean(train_losses[:5])
    predicted = api.predict(run, ["a great film", "an awful film"])
    assert predicted["prediction"].dtype.kind == "f"
