"""Frozen-prefix caching: when it applies, that it computes what the whole model computes, that a
cached run follows the uncached one, that it spills to disk, and that resume stays exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import build_tiny_bert, recipe_dict
from tailorkit import api
from tailorkit.methods import apply_methods
from tailorkit.recipe import recipe_from_dict
from tailorkit.train.frozen_prefix import FrozenPrefix, HiddenStore, why_not

# The loss curves of a cached and an uncached run agree to this (float32 sums over differently
# padded batches differ in the last bits; the models train identically otherwise).
CURVE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def four_block_bert(tmp_path_factory):
    return build_tiny_bert(tmp_path_factory.mktemp("models") / "bert4", layers=4)


def _recipe(model_dir, csv, out, methods, **train) -> dict:
    recipe = recipe_dict(model_dir, csv, out, **{"epochs": 3, **train})
    return {**recipe, "methods": methods}


def _losses(run) -> list[float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["kind"] == "train"]


@pytest.mark.parametrize(("methods", "expected"), [
    ([{"freeze": {"top": 1}}], None),
    ([{"freeze": {"top": 0}}], None),  # head only: every block cached
    ([{"freeze": {"top": 2}}, {"layerwise_lr": {}}], None),
    ([{"full": {}}], "no frozen prefix"),
    ([{"freeze": {"top": 1, "bias": True}}], "no frozen prefix"),  # BitFit reaches block 1
    ([{"freeze": {"top": 1, "embeddings": True}}], "no frozen prefix"),
    ([{"lora": {"r": 2}}], "changes what the frozen blocks compute"),
    ([{"freeze": {"top": 1}}, {"gradual_unfreeze": {}}], "changes what the frozen blocks compute"),
])
def test_caching_applies_only_where_exact(four_block_bert, methods, expected):
    from tailorkit.models.handle import load_text_classifier

    handle = load_text_classifier(four_block_bert, "classes", ["neg", "pos"])
    reason = why_not(handle, apply_methods(handle, methods))
    assert reason is None if expected is None else expected in reason


def test_the_cached_path_computes_what_the_whole_model_computes(four_block_bert, tmp_path):
    from tailorkit.models.handle import load_text_classifier

    handle = load_text_classifier(four_block_bert, "classes", ["neg", "pos"])
    apply_methods(handle, [{"freeze": {"top": 2}}])
    prefix = FrozenPrefix(handle, memory_mb=64, run_dir=tmp_path)
    assert prefix.depth == 2
    batch = handle.tokenizer(["good fine movie", "bad", "a very good and fine film"],
                             padding=True, return_tensors="pt")
    assert prefix.agrees(dict(batch))
    # and the check can fail: a top that skips a block does not agree
    prefix._upper = torch.nn.ModuleList(list(prefix._upper)[1:])
    assert not prefix.agrees(dict(batch))


def test_a_cached_run_follows_the_uncached_run(four_block_bert, sentiment_csv, tmp_path):
    """Same seed, same curve: `cache` against `eval` (the same no-dropout frozen blocks,
    recomputed every step)."""
    methods = [{"freeze": {"top": 2}}]
    cached = api.train(recipe_from_dict(_recipe(four_block_bert, sentiment_csv, tmp_path / "cache",
                                                methods, frozen_prefix="cache")))
    plain = api.train(recipe_from_dict(_recipe(four_block_bert, sentiment_csv, tmp_path / "eval",
                                               methods, frozen_prefix="eval")))
    a, b = _losses(cached), _losses(plain)
    assert len(a) == len(b) > 10
    np.testing.assert_allclose(a, b, rtol=CURVE_TOLERANCE, atol=CURVE_TOLERANCE)
    summary = json.loads((cached / "summary.json").read_text())
    assert summary["frozen_prefix"]["mode"] == "cache"
    assert summary["frozen_prefix"]["frozen_blocks"] == 2
    assert summary["frozen_prefix"]["cached_mb"] > 0
    assert json.loads((plain / "summary.json").read_text())["frozen_prefix"]["mode"] == "eval"
    assert not (cached / "frozen_prefix").exists()  # the cache does not outlive the run


def test_dropout_mode_reports_why_it_does_not_cache(four_block_bert, sentiment_csv, tmp_path):
    run = api.train(recipe_from_dict(_recipe(four_block_bert, sentiment_csv, tmp_path / "r",
                                             [{"freeze": {"top": 2}}], frozen_prefix="train", epochs=1)))
    report = json.loads((run / "summary.json").read_text())["frozen_prefix"]
    assert report == {"mode": "off", "why": "train.frozen_prefix: train"}


def test_states_spill_to_a_memory_mapped_file(four_block_bert, sentiment_csv, tmp_path, monkeypatch):
    spilled = []
    original = HiddenStore.__init__

    def spy(self, lengths, width, in_memory, spill):
        original(self, lengths, width, in_memory, spill)
        spilled.append((in_memory, spill.exists(), isinstance(self.rows, torch.Tensor)))

    monkeypatch.setattr(HiddenStore, "__init__", spy)
    methods = [{"freeze": {"top": 2}}]
    spill = api.train(recipe_from_dict(_recipe(four_block_bert, sentiment_csv, tmp_path / "disk",
                                               methods, cache_memory_mb=0)))
    assert spilled and all(not mem and exists for mem, exists, _ in spilled)
    memory = api.train(recipe_from_dict(_recipe(four_block_bert, sentiment_csv, tmp_path / "mem",
                                                methods)))
    a, b = (json.loads((r / "summary.json").read_text()) for r in (spill, memory))
    assert a["frozen_prefix"]["spilled_to_disk"] and not b["frozen_prefix"]["spilled_to_disk"]
    assert a["test"]["loss"] == pytest.approx(b["test"]["loss"], abs=1e-6)
    assert not (spill / "frozen_prefix").exists()


def test_an_interrupted_cached_run_resumes_exactly(four_block_bert, sentiment_csv, tmp_path,
                                                   resumed_matches_uninterrupted):
    recipe = _recipe(four_block_bert, sentiment_csv, tmp_path / "run", [{"freeze": {"top": 2}}],
                     checkpoint_steps=3)
    assert resumed_matches_uninterrupted(recipe, crash_at_step=14) < 1e-5
