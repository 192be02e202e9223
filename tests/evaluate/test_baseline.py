"""The trivial baseline is computed right, and a run that does not beat it is called out."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tailorkit.evaluate.baseline import baseline, shortfalls
from tailorkit.evaluate.metrics import classification_metrics

LABELS = ["a", "b", "c"]


def test_majority_class_baseline():
    trivial = baseline("classes", np.array([0, 0, 0, 1, 2]), {"test": np.array([0, 1, 1, 2])}, LABELS)
    assert trivial["rule"] == "majority class 'a'"
    assert trivial["test"]["accuracy"] == 0.25
    assert trivial["test"]["recall_macro"] == pytest.approx(1 / 3)


def test_mean_predictor_baseline():
    trivial = baseline("scalar", np.array([1.0, 3.0]), {"test": np.array([1.0, 3.0, 5.0])}, [])
    assert trivial["rule"] == "training mean 2"
    assert trivial["test"]["mse"] == pytest.approx((1 + 1 + 9) / 3)


def test_a_classifier_that_predicts_one_class_is_called_out():
    y = np.array([0, 0, 1, 2])
    trivial = baseline("classes", np.array([0, 0, 1]), {"test": y}, LABELS)
    lazy = classification_metrics(y, np.zeros(4, dtype=int), LABELS)
    found = shortfalls("classes", lazy, trivial, lr=0.001)
    assert found[0].startswith("the model predicts 'a' for every test example; train longer")
    assert "check train.lr (0.001 now) (LoRA and other adapters often need 1e-3" in found[0]
    assert found[1].startswith("test accuracy 0.5000 does not beat the majority class 'a', whose test "
                               "accuracy is 0.5000")
    assert "train.class_weights: balanced" in found[1]
    good = classification_metrics(y, y, LABELS)
    assert shortfalls("classes", good, trivial) == []


def test_a_regressor_worse_than_the_mean_is_called_out():
    trivial = baseline("scalar", np.array([1.0, 3.0]), {"test": np.array([1.0, 3.0])}, [])
    (found,) = shortfalls("scalar", {"mse": 5.0, "mae": 2.0}, trivial)
    assert found.startswith("test mse 5 does not beat the training mean 2, whose test mse is 1; train longer")
    assert "class_weights" not in found  # no classes to weigh
    assert shortfalls("scalar", {"mse": 0.5, "mae": 0.5}, trivial) == []
    # with loss: mae the run is judged by the error it minimised: a lower mae passes, a higher mse or not
    assert shortfalls("scalar", {"mse": 5.0, "mae": 0.9}, trivial, loss="mae") == []
    assert shortfalls("scalar", {"mse": 0.5, "mae": 1.5}, trivial, loss="mae")[0].startswith(
        "test mae 1.5 does not beat the training mean 2, whose test mae is 1")


def test_every_run_reports_its_baseline(finished_run):
    summary = json.loads((finished_run / "summary.json").read_text())
    frame_targets = summary["test"]["per_class"]
    majority_share = max(c["support"] for c in frame_targets.values()) / sum(
        c["support"] for c in frame_targets.values())
    assert summary["baseline"]["rule"].startswith("majority class")
    assert summary["baseline"]["test"]["accuracy"] <= majority_share
    assert summary["warnings"] == []  # the tiny run learned its cue words


def test_the_console_shows_the_baseline_and_the_warnings(finished_run, tmp_path, capsys):
    from tailorkit.cli_train import _print_summary

    summary = json.loads((finished_run / "summary.json").read_text())
    (tmp_path / "summary.json").write_text(json.dumps({**summary, "warnings": ["it learned nothing"]}))
    _print_summary(tmp_path)
    out = capsys.readouterr()
    assert "baseline (majority class" in out.out
    assert "warning: it learned nothing" in out.err
