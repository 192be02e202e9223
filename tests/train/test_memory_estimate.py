"""The memory estimate made before training (train/memory_estimate.py): it counts what the
backward keeps, sees the levers that change it, leaves the model and the random stream as they
were, and reaches the run's summary and `tailor recipe validate --estimate`."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from conftest import recipe_dict
from tailorkit import api
from tailorkit.cli import main
from tailorkit.recipe import recipe_from_dict
from test_causal_lm import _recipe, qa_csv  # noqa: F401  (module fixture)


def _lm_estimate(make_trainer, tiny_llama, qa_csv, folder, **train):  # noqa: F811
    recipe = _recipe(tiny_llama, qa_csv, folder / "run", [{"lora": {"r": 4}}], **train)
    recipe["generation"]["samples"] = 0
    return make_trainer(recipe).memory_estimate()


def test_checkpointing_and_the_chunked_loss_lower_the_estimate(make_trainer, tiny_llama, qa_csv, tmp_path):  # noqa: F811
    plain, length = _lm_estimate(make_trainer, tiny_llama, qa_csv, tmp_path / "a", lm_head_chunk=0)
    chunked, _ = _lm_estimate(make_trainer, tiny_llama, qa_csv, tmp_path / "b", lm_head_chunk=4)
    recomputed, _ = _lm_estimate(make_trainer, tiny_llama, qa_csv, tmp_path / "c",
                                 activation_checkpointing=True)
    assert length > 0 and plain.activations_mb > 0
    assert chunked.logits_mb < plain.logits_mb
    assert recomputed.activations_mb < chunked.activations_mb
    # the plain loss: batch x length x vocabulary floats, LOGIT_COPIES times
    vocab = 8 * length * len(json.loads((tiny_llama / "tokenizer.json").read_text())["model"]["vocab"])
    assert plain.logits_mb >= vocab * 4 / 2**20
    assert "activations (8 x" in plain.line(8, length)


def test_the_probe_leaves_the_random_stream_and_the_weights_alone(make_trainer, tiny_recipe):
    trainer = make_trainer(tiny_recipe)
    before = {k: v.clone() for k, v in trainer.handle.model.state_dict().items()}
    rng, python, numpy = torch.get_rng_state(), random.getstate(), np.random.get_state()
    estimate, _ = trainer.memory_estimate()
    assert estimate.activations_mb > 0 and estimate.gradients_mb > 0
    assert torch.equal(torch.get_rng_state(), rng) and random.getstate() == python
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy, strict=True))
    after = trainer.handle.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_run_reports_its_estimate_beside_its_peak(tiny_model_dir, sentiment_csv, tmp_path, capsys):
    run = api.train(recipe_from_dict(recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "run", max_steps=2,
                                                 progress=True)))
    summary = json.loads((run / "summary.json").read_text())
    estimate = summary["memory_estimate"]
    parts = sum(v for k, v in estimate.items() if k != "peak_mb")
    assert estimate["peak_mb"] == pytest.approx(parts, abs=0.5)
    assert "memory estimate: peak" in capsys.readouterr().err


def test_recipe_validate_estimates_without_training(tiny_recipe, write_recipe, capsys, tmp_path):
    path = write_recipe(tiny_recipe)
    main(["recipe", "validate", str(path), "--estimate"])
    err = capsys.readouterr().err
    assert "valid" in err and "memory estimate: peak" in err and "activations" in err
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())  # nothing trained


def test_weights_mapped_from_their_file_count_as_loaded(tmp_path):
    """from_pretrained maps safetensors weights; they become resident only when read, which the
    first training step does. The estimate reads them first (SmolLM2: 540 MB it had missed)."""
    from transformers import BertConfig, BertModel

    from tailorkit.runtime import resident_mb
    from tailorkit.train.memory_estimate import _read_weights

    config = BertConfig(vocab_size=30_000, hidden_size=512, num_hidden_layers=1, num_attention_heads=8,
                        intermediate_size=1024)
    BertModel(config).save_pretrained(tmp_path)
    weights_mb = (tmp_path / "model.safetensors").stat().st_size / 2**20
    before = resident_mb()
    model = BertModel.from_pretrained(tmp_path)
    _read_weights(model)
    assert resident_mb() - before > 0.9 * weights_mb  # about 78 MB
    del model
