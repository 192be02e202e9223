"""Gradual magnitude pruning: Zhu & Gupta's schedule, the sparsity it reaches, masks that hold
while the optimiser steps, and an exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tailorkit import api
from tailorkit.errors import TailorError
from tailorkit.methods import build_methods
from tailorkit.methods.gradual_prune import schedule
from tailorkit.models.mobilenet_v2 import build_mobilenet_v2
from tailorkit.models.vision import vision_handle
from tailorkit.recipe import recipe_from_dict
from tailorkit.train.loop import Trainer


def test_schedule_is_the_cubic_ramp_of_zhu_and_gupta():
    # 100 steps, pruning from step 10 to 50 every 10 steps, towards 0.8
    values = [schedule(t, 100, 0.8, 0.1, 0.5, 10) for t in (0, 9, 10, 19, 20, 30, 40, 49, 50, 100)]
    by_hand = [0, 0, 0, 0, 0.8 * (1 - 0.75 ** 3), 0.8 * (1 - 0.5 ** 3), 0.8 * (1 - 0.25 ** 3),
               0.8 * (1 - 0.25 ** 3), 0.8, 0.8]
    assert values == pytest.approx(by_hand)


def _recipe(tiny_recipe, **prune) -> dict:
    return {**tiny_recipe, "methods": ["full", {"gradual_prune": {"target": 0.5, "end": 0.5, "every": 2,
                                                                  **prune}}],
            "train": {**tiny_recipe["train"], "epochs": 3, "checkpoint_steps": 1000}}


def test_sparsity_follows_the_schedule_and_the_pruned_weights_stay_zero(tiny_recipe, monkeypatch):
    seen = []
    original = Trainer._run_epoch

    def watch(self, stop, bar):
        prune = self.methods[-1]
        hook = prune.on_step

        def on_step(handle, step, total):
            hook(handle, step, total)
            layers = [m.weight for _, m in prune.layers]
            zeros = sum(int((w == 0).sum()) for w in layers) / sum(w.numel() for w in layers)
            seen.append((step, total, zeros))

        monkeypatch.setattr(prune, "on_step", on_step)
        return original(self, stop, bar)

    monkeypatch.setattr(Trainer, "_run_epoch", watch)
    run = api.train(recipe_from_dict(_recipe(tiny_recipe)))
    total = seen[0][1]
    for step, _, zeros in seen:
        assert zeros == pytest.approx(schedule(step, total, 0.5, 0.0, 0.5, 2), abs=2e-4), step
    summary = json.loads((run / "summary.json").read_text())
    assert summary["gradual_prune"]["sparsity"] == pytest.approx(0.5, abs=1e-4)
    weights = load_file(str(run / "model" / "model.safetensors"))
    query = weights["bert.encoder.layer.0.attention.self.query.weight"]
    assert 0.2 < float((query == 0).float().mean()) < 0.8  # global ranking: layers differ
    assert float((weights["classifier.weight"] == 0).float().mean()) == 0  # the head is left alone


def test_a_resumed_run_prunes_exactly_as_an_uninterrupted_one(tiny_recipe, resumed_matches_uninterrupted):
    assert resumed_matches_uninterrupted(_recipe(tiny_recipe), crash_at_step=5) == 0.0


def test_adapters_are_refused(tiny_recipe):
    with pytest.raises(TailorError, match="does not combine with adapters"):
        recipe_from_dict({**tiny_recipe, "methods": [{"lora": {}}, "gradual_prune"]})


def test_convolutions_of_an_image_model_are_pruned_too():
    handle = vision_handle(build_mobilenet_v2(3, None))
    (prune,) = build_methods([{"gradual_prune": {"target": 0.4}}])
    prune.apply(handle)
    assert any(isinstance(m, torch.nn.Conv2d) for _, m in prune.layers)
    prune.on_step(handle, 100, 100)  # past `end`: the target
    weights = [m.weight for _, m in prune.layers]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(0.4, abs=1e-4)
    assert float((handle.model.classifier[-1].weight == 0).float().mean()) == 0
