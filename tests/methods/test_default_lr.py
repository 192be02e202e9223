"""Method-aware default learning rate (#15): a recipe without `train.lr` gets its methods'
default, resolved when the recipe is read, so the run's recipe.yaml shows the value used."""

from __future__ import annotations

import pytest
import yaml

from tailorkit import api, cli
from tailorkit.config.train import TRAINER_LR, TrainConfig
from tailorkit.methods import METHODS, default_lr_of
from tailorkit.recipe import Recipe, dump_recipe, recipe_from_dict

BASE = {"model": {"name": "some-model"}, "data": {"train": "train.csv"}}
IMAGE = {"task": "image_classification", "model": {"name": "mobilenet-v2"}, "data": {"name": "digits"}}
# full and partial fine-tuning keep the trainer's rate; what starts from fresh weights or trains
# few parameters gets a higher one (sources: tailorkit.methods.base.default_lr_of)
TRAINER_RATE = {"full", "freeze", "layerwise_lr", "gradual_unfreeze", "distill", "gradual_prune"}
HIGHER = {"lora", "ia3", "bottleneck", "prefix", "prompt", "features"}


def test_the_methods_named_here_exist():
    assert set(METHODS) >= TRAINER_RATE | HIGHER


@pytest.mark.parametrize("name", sorted(METHODS))
def test_default_lr_is_none_or_higher_than_the_trainers(name):
    """Only the methods in HIGHER have a rate of their own (a new method that trains from fresh
    weights should join them, with its source in methods.base.default_lr_of)."""
    rate = METHODS[name].default_lr
    if name in HIGHER:
        assert isinstance(rate, float) and TRAINER_LR < rate < 0.1
    else:
        assert rate is None


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"distill"}))  # distill needs a teacher run
def test_recipe_without_lr_resolves_to_the_methods_default(name):
    base = BASE if "text" in METHODS[name].modalities else IMAGE
    recipe = recipe_from_dict({**base, "methods": [name]})
    expected = METHODS[name].default_lr or TRAINER_LR
    assert recipe.train.lr == expected == default_lr_of([name])
    assert yaml.safe_load(dump_recipe(recipe))["train"]["lr"] == expected


def test_concrete_values():
    rates = {m: recipe_from_dict({**BASE, "methods": [m]}).train.lr
             for m in ("full", "lora", "ia3", "bottleneck", "prefix", "prompt", "features")}
    assert rates == {"full": 5e-5, "lora": 1e-3, "ia3": 3e-3, "bottleneck": 1e-3, "prefix": 1e-2,
                     "prompt": 3e-2, "features": 1e-3}, "README's table of defaults says these"


@pytest.mark.parametrize(("methods", "adapter"), [
    ([{"freeze": {"bias": True}}, "lora"], "lora"),
    (["lora", {"layerwise_lr": {"decay": 0.8}}], "lora"),
    ([{"freeze": {"top": 2}}, "bottleneck"], "bottleneck"),
])
def test_with_several_methods_the_largest_default_wins(methods, adapter):
    assert recipe_from_dict({**BASE, "methods": methods}).train.lr == METHODS[adapter].default_lr


def test_partial_methods_alone_keep_the_trainers_rate():
    methods = [{"freeze": {"top": 2}}, {"layerwise_lr": {"decay": 0.8}}]
    assert recipe_from_dict({**BASE, "methods": methods}).train.lr == TRAINER_LR


@pytest.mark.parametrize("lr", [1e-5, 5e-5, 2e-2])
def test_an_explicit_lr_is_kept(lr):
    assert recipe_from_dict({**BASE, "methods": ["lora"], "train": {"lr": lr}}).train.lr == lr


def test_null_lr_means_the_default():
    assert recipe_from_dict({**BASE, "methods": ["prefix"], "train": {"lr": None}}).train.lr == 1e-2


def test_set_override_of_methods_changes_the_default(write_recipe):
    from tailorkit.recipe import load_recipe

    path = write_recipe(BASE)
    assert load_recipe(path).train.lr == TRAINER_LR
    assert load_recipe(path, ["methods=[lora]"]).train.lr == 1e-3
    assert load_recipe(path, ["methods=[lora]", "train.lr=5e-5"]).train.lr == 5e-5


def test_validate_prints_the_resolved_rate(write_recipe, capsys):
    path = write_recipe({**BASE, "methods": ["ia3"]})
    assert cli.main(["recipe", "validate", str(path)]) == 0
    assert "lr: 0.003" in capsys.readouterr().out


def test_search_over_lr_still_works():
    space = {"space": {"train.lr": {"low": 1e-5, "high": 1e-2, "log": True}}}
    recipe = recipe_from_dict({**BASE, "methods": ["lora"], "search": space})
    assert recipe.train.lr == 1e-3 and "train.lr" in recipe.search.space


def test_a_trainconfig_alone_uses_the_trainers_rate():
    assert TrainConfig().lr is None and TrainConfig().peak_lr == TRAINER_LR
    assert TrainConfig(lr=1e-3).peak_lr == 1e-3


def test_a_recipe_built_in_python_is_resolved_by_train(tiny_recipe, tmp_path):
    """api.train on a Recipe that never went through recipe_from_dict still records the rate."""
    raw = {**tiny_recipe, "methods": [{"lora": {"r": 2}}], "output_dir": str(tmp_path / "run")}
    raw["train"] = {k: v for k, v in raw["train"].items() if k != "lr"} | {"max_steps": 1}
    recipe = Recipe.model_validate(raw)
    assert recipe.train.lr is None
    run = api.train(recipe)
    assert yaml.safe_load((run / "recipe.yaml").read_text())["train"]["lr"] == 1e-3
