"""Regression targets: trained standardised, predicted and saved in their own units."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from conftest import make_sentences, recipe_dict
from tailorkit import api
from tailorkit.inference import load_run
from tailorkit.models.target_scaling import TargetScaling, fold_target_scaling, scale_output
from tailorkit.recipe import recipe_from_dict


@pytest.mark.parametrize("bias", [True, False])
def test_fold_keeps_the_outputs_and_removes_the_hook(bias):
    torch.manual_seed(0)
    layer = nn.Linear(4, 1, bias=bias)
    x = torch.randn(6, 4)
    scaling = TargetScaling.fit(np.array([900.0, 1000.0, 1100.0]), centre=bias)
    plain = layer(x)
    scale_output(layer, scaling)
    scaled = layer(x)
    assert torch.allclose(scaled, plain * scaling.std + scaling.mean)
    fold_target_scaling(layer)
    assert not layer._forward_hooks
    assert torch.allclose(layer(x), scaled, atol=1e-4)


def test_constant_targets_are_not_divided_by_zero():
    assert TargetScaling.fit(np.full(5, 3.0)) == TargetScaling(3.0, 1.0)


@pytest.fixture
def prices(tmp_path):
    """Targets far from 0 (about 1000 +- 30): an unscaled new head starts about 1000 away."""
    frame = make_sentences(120)
    frame["price"] = 1000 + 300 * (frame["score"] - 0.5)
    path = tmp_path / "prices.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("methods", [["full"], [{"lora": {"r": 4}}]], ids=["full", "lora"])
def test_a_regression_run_predicts_in_target_units_and_reloads_the_same(methods, tiny_model_dir, prices,
                                                                         tmp_path):
    raw = recipe_dict(tiny_model_dir, prices, tmp_path / "run", epochs=1, lr=1e-4)
    raw.update(task="regression", methods=methods)
    raw["data"]["label_column"] = "price"
    run = api.train(recipe_from_dict(raw))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["target_scaling"]["mean"] == pytest.approx(1000, abs=10)
    # Ten steps at lr 1e-4: without standardised targets every prediction stays near 0 and
    # r2 is about -1000; standardised, the head starts at the mean.
    assert summary["test"]["r2"] > -1.0, summary["test"]
    written = pd.read_csv(run / "predictions_test.csv")
    assert written["prediction"].between(900, 1100).all()

    _, handle, _, _ = load_run(run)  # the saved model: no hook, the scaling folded into the head
    assert not any(m._forward_hooks for m in handle.model.modules())
    again = api.predict(run, written["text"].tolist())
    np.testing.assert_allclose(again["prediction"], written["prediction"], atol=1e-3)
