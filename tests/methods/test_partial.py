"""Partial fine-tuning beyond the shared contract: LLRD factors, gradual unfreezing over epochs,
and the errors a user can hit."""

from __future__ import annotations

import pytest
import torch

from tailorkit.errors import TailorError
from tailorkit.methods import apply_methods, build_methods


def test_layerwise_lr_factors_by_depth(make_handle):
    handle = make_handle()
    (method,) = build_methods([{"layerwise_lr": {"decay": 0.5}}])
    scales = method.lr_scales(handle)
    assert scales["classifier.weight"] == scales["bert.pooler.dense.weight"] == 1.0
    assert scales["bert.encoder.layer.1.attention.self.query.weight"] == 0.5
    assert scales["bert.encoder.layer.0.output.dense.bias"] == 0.25
    assert scales["bert.embeddings.word_embeddings.weight"] == 0.125
    assert set(scales) == {n for n, _ in handle.named_parameters()}


def test_layerwise_lr_reaches_the_optimizer(tiny_recipe, make_trainer):
    methods = [{"freeze": {"top": 1}}, {"layerwise_lr": {"decay": 0.1}}]
    trainer = make_trainer({**tiny_recipe, "methods": methods, "train": {**tiny_recipe["train"], "lr": 1.0}})
    names = {id(p): n for n, p in trainer.handle.named_parameters()}
    lr = {names[id(p)]: g["initial_lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert lr["classifier.weight"] == 1.0
    assert lr["bert.encoder.layer.1.output.dense.weight"] == pytest.approx(0.1)
    assert lr["bert.encoder.layer.0.output.dense.weight"] == pytest.approx(0.01)


@pytest.mark.parametrize(("epochs", "every", "embeddings", "trained_depths"), [
    (1, 1, True, {3}),
    (2, 1, True, {2, 3}),
    (3, 1, True, {1, 2, 3}),
    (4, 1, True, {0, 1, 2, 3}),
    (4, 1, False, {1, 2, 3}),
    (3, 2, True, {2, 3}),
])
def test_gradual_unfreezing_opens_one_block_per_period(tiny_recipe, make_trainer, epochs, every,
                                                       embeddings, trained_depths):
    trainer = make_trainer({**tiny_recipe, "methods": [
        {"gradual_unfreeze": {"every": every, "embeddings": embeddings}}],
        "train": {**tiny_recipe["train"], "epochs": epochs, "lr": 1e-2}})
    handle = trainer.handle
    before = {n: p.detach().clone() for n, p in handle.named_parameters()}
    trainer.fit()
    changed = {handle.depth(n) for n, p in handle.named_parameters() if not torch.equal(before[n], p)}
    assert changed == trained_depths


def test_freeze_top_more_than_the_model_has(make_handle):
    with pytest.raises(TailorError, match="freeze.top=5, but the model has 2 blocks"):
        apply_methods(make_handle(), [{"freeze": {"top": 5}}])


def test_nothing_trainable_is_refused(make_handle):
    with pytest.raises(TailorError, match="nothing is trainable"):
        apply_methods(make_handle(), [{"freeze": {"head": False}}])


def test_exclude_wins_over_every_inclusion(make_handle):
    handle = make_handle()
    apply_methods(handle, [{"freeze": {"top": 2, "bias": True, "exclude": [r"\.bias$"]}}])
    names = handle.trainable_names()
    assert names and not any(n.endswith(".bias") for n in names)
    assert "bert.encoder.layer.0.attention.self.query.weight" in names


def test_bad_method_config_is_a_user_error(make_handle):
    with pytest.raises(TailorError, match=r"methods\[0\]\.freeze\.top"):
        apply_methods(make_handle(), [{"freeze": {"top": "two"}}])


def test_gradual_unfreezing_counts_what_trained_not_what_started(tiny_recipe):
    """summary.parameters.trainable covers every block that opened during the run."""
    import json

    from tailorkit import api
    from tailorkit.recipe import recipe_from_dict

    recipe = {**tiny_recipe, "methods": [{"gradual_unfreeze": {"every": 1, "embeddings": False}}],
              "train": {**tiny_recipe["train"], "epochs": 3}}
    run = api.train(recipe_from_dict(recipe))
    summary = json.loads((run / "summary.json").read_text())
    handle = api.load_run(run)[1]
    no_embeddings = sum(p.numel() for n, p in handle.named_parameters() if handle.depth(n) > 0)
    assert summary["parameters"]["trainable"] == no_embeddings  # head + both blocks opened


def test_gradual_unfreezing_after_lora_opens_lora_by_block(make_handle):
    handle = make_handle()
    methods = apply_methods(handle, [{"lora": {"r": 2}}, {"gradual_unfreeze": {}}])
    head = handle.num_blocks + 1  # the pooler's LoRA sits in the head
    assert all(handle.depth(n) == head for n in handle.trainable_names())  # epoch 0: head only
    methods[1].on_epoch_start(handle, 1)
    opened = [n for n in handle.trainable_names() if handle.depth(n) < head]
    assert opened and all(".layer.1." in n and "lora_" in n for n in opened)
    assert all("lora_" in n or "modules_to_save" in n for n in handle.trainable_names())
