"""Masked-LM domain adaptation: the masking statistics, a run that lowers the masked loss,
and a classifier that starts from its result."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import build_tiny_tokenizer, recipe_dict
from tailorkit import api
from tailorkit.data.mlm import EncodedMLM, mask_tokens
from tailorkit.data.templates import IGNORE
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict


def test_masking_statistics():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (400, 250), generator=generator)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = maskable[:, -1] = False  # [CLS] ... [SEP]
    inputs, labels = mask_tokens(ids, maskable, 0.15, mask_id=3, vocab_size=1000, generator=generator)
    chosen = labels != IGNORE
    assert chosen.float().mean().item() == pytest.approx(0.15 * 248 / 250, abs=0.003)
    assert not chosen[:, 0].any() and not chosen[:, -1].any()  # specials never masked
    assert torch.equal(labels[chosen], ids[chosen])  # the targets are the original tokens
    assert torch.equal(inputs[~chosen], ids[~chosen])  # nothing else changes
    n = chosen.sum().item()
    as_mask = (inputs[chosen] == 3).sum().item() / n
    kept = (inputs[chosen] == ids[chosen]).sum().item() / n
    assert as_mask == pytest.approx(0.8, abs=0.01)
    assert kept == pytest.approx(0.1, abs=0.01)  # (a random swap hits the same id ~0.1% of times)
    assert 1 - as_mask - kept == pytest.approx(0.1, abs=0.01)


def test_evaluation_masks_are_fixed_per_example():
    tokenizer = build_tiny_tokenizer()
    texts = ["the movie was good and the plot was fine"] * 6
    data = EncodedMLM(texts, tokenizer, 32, 0.3, fixed_seed=7)
    alone = data.collate([4])["input_ids"][0]
    batched = data.collate([2, 4, 5])["input_ids"][1]
    assert torch.equal(alone, batched)
    assert not torch.equal(data.collate([2])["input_ids"][0], alone)  # another example, another mask


def test_mlm_run_lowers_the_masked_loss_and_feeds_a_classifier(tiny_model_dir, sentiment_csv, tmp_path):
    def mlm(out, epochs):
        recipe = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / out, epochs=epochs, lr=3e-3)
        return api.train(recipe_from_dict({**recipe, "task": "mlm",
                                           "data": {**recipe["data"], "mlm_probability": 0.3}}))

    before, after = mlm("before", 0), mlm("after", 6)
    loss = [json.loads((r / "summary.json").read_text())["test"]["loss"] for r in (before, after)]
    # the tiny corpus is random filler words: little is predictable, but training must find it
    # (lr 3e-3: the loss fell 0.16-0.28 over seeds 0-3; at 1e-2 it swung 0.05-0.32 with the seed)
    assert loss[1] < loss[0] - 0.1, loss
    assert json.loads((after / "summary.json").read_text())["test"]["tokens"] > 0
    with pytest.raises(TailorError, match="adapts an encoder: train a classification or regression recipe"):
        api.predict(after, ["hello", "a second text"])

    # a later classification recipe starts from the adapted encoder
    recipe = recipe_dict(after / "model", sentiment_csv, tmp_path / "cls", epochs=1)
    run = api.train(recipe_from_dict(recipe))
    from safetensors.torch import load_file

    adapted = load_file(str(after / "model" / "model.safetensors"))
    classifier = api.load_run(run)[1].model
    key = "bert.embeddings.word_embeddings.weight"
    assert key in adapted and classifier.bert.embeddings.word_embeddings.weight.shape == adapted[key].shape


def test_mlm_resume_masks_exactly_as_the_uninterrupted_run(tiny_model_dir, sentiment_csv, tmp_path,
                                                          resumed_matches_uninterrupted):
    recipe = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "whole", epochs=2, checkpoint_steps=3)
    assert resumed_matches_uninterrupted({**recipe, "task": "mlm"}, crash_at_step=5) <= 1e-6
