"""Dotted paths applied to a plain recipe, the grid a space spans, its Optuna distributions."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from tailorkit.config.search import SearchConfig
from tailorkit.config.space import apply_params, grid_values, set_path
from tailorkit.recipe import recipe_from_dict
from tailorkit.search.space import distributions


def test_set_path_reaches_method_options_and_creates_sections():
    raw = {"methods": [{"freeze": {}}, {"lora": {"r": 8}}], "train": {"early_stopping": None}}
    set_path(raw, "methods.1.lora.r", 16)
    set_path(raw, "train.early_stopping.patience", 2)
    set_path(raw, "seed", 7)
    assert raw == {"methods": [{"freeze": {}}, {"lora": {"r": 16}}],
                   "train": {"early_stopping": {"patience": 2}}, "seed": 7}


def test_apply_params_leaves_the_base_alone_and_gives_a_valid_recipe():
    base = {"model": {"name": "minilm-l6"}, "data": {"name": "bbc-news"}, "methods": [{"lora": {}}]}
    raw = apply_params(base, {"train.lr": 3e-4, "methods.0.lora.r": 4})
    assert base["methods"] == [{"lora": {}}] and "train" not in base
    recipe = recipe_from_dict(raw)
    assert recipe.train.lr == 3e-4 and recipe.methods[0].config.r == 4


def test_grid_values_are_every_point_of_each_parameter():
    cfg = SearchConfig.model_validate({"space": {
        "a": [1, "x", None], "b": {"low": 8, "high": 32, "step": 8},
        "c": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1}, "d": {"low": 1, "high": 3}}})
    assert grid_values(cfg) == {"a": [1, "x", None], "b": [8, 16, 24, 32], "c": [0.0, 0.1, 0.2, 0.3],
                                "d": [1, 2, 3]}
    with pytest.raises(ValueError, match="search.space.e: the grid sampler needs a discrete space"):
        grid_values(SearchConfig.model_validate({"space": {"e": {"low": 0.1, "high": 0.2}}}))


def test_distributions_keep_scale_and_step():
    cfg = SearchConfig.model_validate({"space": {
        "lr": {"low": 1e-4, "high": 1e-2, "log": True}, "bs": {"low": 8, "high": 32, "step": 8},
        "r": [4, 8]}})
    d = distributions(cfg)
    assert d["lr"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert d["bs"] == IntDistribution(8, 32, step=8)
    assert d["r"] == CategoricalDistribution([4, 8])


def test_a_chosen_method_replaces_the_entry_and_takes_its_own_options_only():
    base = {"model": {"name": "minilm-l6"}, "data": {"name": "bbc-news"},
            "methods": [{"lora": {"r": 8, "alpha": 16}}, "full"]}
    # the recipe's own method keeps its options; another starts from its defaults
    assert apply_params(base, {"methods.0": "lora"})["methods"][0] == {"lora": {"r": 8, "alpha": 16}}
    raw = apply_params(base, {"methods.0.freeze.bias": True, "methods.0": "freeze"})  # any order
    assert raw["methods"] == [{"freeze": {"bias": True}}, "full"]
    assert recipe_from_dict(raw).methods[0].config.bias is True
    assert apply_params(base, {"methods.1": "lora"})["methods"][1] == {"lora": {}}


def test_conditional_options_are_sampled_only_with_their_method():
    import optuna

    cfg = SearchConfig.model_validate({"space": {"methods.0": ["lora", "freeze"], "methods.0.lora.r": [2, 8],
                                                 "methods.0.freeze.top": {"low": 0, "high": 2},
                                                 "train.lr": [1e-3]}})
    assert set(distributions(cfg)) == {"methods.0", "train.lr"}
    assert set(distributions(cfg, conditional=True)) == {"methods.0.lora.r", "methods.0.freeze.top"}
    from tailorkit.search.space import suggest_conditional

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask(distributions(cfg))
        suggest_conditional(trial, cfg)
        method = trial.params["methods.0"]
        other = "freeze" if method == "lora" else "lora"
        assert any(p.startswith(f"methods.0.{method}.") for p in trial.params)
        assert not any(p.startswith(f"methods.0.{other}.") for p in trial.params)
        seen.add(method)
        study.tell(trial, 0.0)
    assert seen == {"lora", "freeze"}
