"""The search: block is validated with the recipe: every dotted path against the schema, every
bound and choice as a real recipe value, the metric against the task. Nothing loads here."""

from __future__ import annotations

import pytest
import yaml

from tailorkit.cli import main
from tailorkit.config.search import CategoricalParam, FloatParam, IntParam
from tailorkit.errors import TailorError
from tailorkit.recipe import dump_recipe, recipe_from_dict

BASE = {"model": {"name": "minilm-l6"}, "data": {"name": "bbc-news"}, "methods": [{"lora": {"r": 8}}]}


def with_search(**search) -> dict:
    return {**BASE, "search": search}


def error_of(**search) -> str:
    with pytest.raises(TailorError) as info:
        recipe_from_dict(with_search(**search), "r.yaml")
    return str(info.value)


def test_a_valid_block_and_its_shorthands():
    recipe = recipe_from_dict(with_search(space={
        "train.lr": {"low": 1e-4, "high": 1e-2, "log": True},
        "methods.0.lora.r": [4, 8, 16],
        "train.batch_size": {"low": 8, "high": 32, "step": 8},
        "train.warmup_ratio": {"type": "float", "low": 0, "high": 0.2, "step": 0.1},
        "methods.0.lora.dropout": {"type": "categorical", "choices": [0.0, 0.1]},
    }, metric="accuracy"))
    space = recipe.search.space
    assert isinstance(space["train.lr"], FloatParam) and space["train.lr"].log
    assert isinstance(space["methods.0.lora.r"], CategoricalParam)
    assert space["methods.0.lora.r"].choices == [4, 8, 16]
    assert isinstance(space["train.batch_size"], IntParam) and space["train.batch_size"].step == 8
    assert isinstance(space["train.warmup_ratio"], FloatParam)  # the explicit type wins over int bounds
    assert recipe.search.resolved_direction() == "maximize"
    assert recipe.search.sampler == "tpe" and recipe.search.pruner == "none"


@pytest.mark.parametrize(("space", "expected"), [
    ({"train.lrr": [1e-3]}, "search.space.train.lrr: unknown field 'lrr'; did you mean 'lr'?"),
    ({"trian.lr": [1e-3]}, "search.space.trian.lr: unknown field 'trian'; did you mean 'train'?"),
    ({"methods.0.lora.rank": [4]}, "search.space.methods.0.lora.rank: unknown field 'rank'"),
    ({"methods.0.freeze.top": [1]}, "search.space.methods.0.freeze.top: methods[0] is lora, not freeze"),
    ({"methods.1.lora.r": [4]}, "search.space.methods.1.lora.r: '1' is not an index of methods"),
    ({"methods.lora.r": [4]}, "a method option is written methods.<index>.<method>.<option>"),
    ({"train": [1]}, "search.space.train: 'train' is a section"),
    ({"train.lr.value": [1]}, "search.space.train.lr.value: 'lr' is a value, not a section"),
    ({"output_dir": ["a", "b"]}, "search.space.output_dir: output_dir cannot be searched"),
])
def test_a_typo_in_a_dotted_path_fails_at_validation(space, expected):
    message = error_of(space=space)
    assert message.startswith("r.yaml: ") and expected in message
    assert "\n" not in message


@pytest.mark.parametrize(("space", "expected"), [
    ({"methods.0.lora.r": [0, 8]}, "search.space.methods.0.lora.r: value 0 is refused: "
                                   "methods[0].lora.r: Input should be greater than or equal to 1"),
    ({"train.lr": {"low": -1.0, "high": 1e-2}}, "search.space.train.lr: value -1.0 is refused: train.lr"),
    ({"train.optimizer": ["adamw", "lion"]}, "value 'lion' is refused: train.optimizer: must be one of"),
    ({"train.lr": {"low": 1e-2, "high": 1e-4}}, "low (0.01) is above high (0.0001)"),
    ({"train.lr": {"low": 0.0, "high": 1e-2, "log": True}}, "log scale needs low > 0"),
    ({"train.batch_size": {"low": 8, "high": 30, "step": 8}}, "high - low (22) is not a multiple of step"),
    ({"train.lr": {"lo": 1e-4, "high": 1e-2}}, "train.lr: unknown key 'lo' for a float parameter"),
    ({"train.lr": [1e-3, 1e-3]}, "choices repeat a value"),
    ({"train.lr": "fast"}, "train.lr: give a list of choices"),
])
def test_values_the_recipe_refuses_fail_at_validation(space, expected):
    assert expected in error_of(space=space)


def test_grid_needs_a_discrete_space():
    message = error_of(space={"train.lr": {"low": 1e-4, "high": 1e-2}}, sampler="grid")
    assert "search.space.train.lr: the grid sampler needs a discrete space" in message
    recipe_from_dict(with_search(space={"train.lr": {"low": 1e-3, "high": 3e-3, "step": 1e-3}},
                                 sampler="grid"))


def test_metric_must_belong_to_the_task():
    assert "search.metric: 'r2' is not a classification metric" in error_of(
        space={"train.lr": [1e-3]}, metric="r2")


def test_options_of_the_block_are_checked():
    assert "search.sampel: unknown field; did you mean 'sampler'?" in error_of(
        space={"train.lr": [1e-3]}, sampel="grid")
    assert "search.pruner: must be one of" in error_of(space={"train.lr": [1e-3]}, pruner="sha")
    assert "search.space" in error_of(space={})


def test_cross_validation_needs_a_table_task():
    raw = {"task": "causal_lm", "model": {"name": "m"}, "data": {"name": "chatterbot-qa"},
           "search": {"space": {"train.lr": [1e-3]}, "cv_folds": 3}}
    with pytest.raises(TailorError, match="search.cv_folds: cross-validation works on classification"):
        recipe_from_dict(raw)


def test_a_plain_recipe_is_saved_without_a_search_block():
    assert "search" not in yaml.safe_load(dump_recipe(recipe_from_dict(BASE)))
    saved = yaml.safe_load(dump_recipe(recipe_from_dict(with_search(space={"train.lr": [1e-3]}))))
    assert saved["search"]["space"] == {"train.lr": {"type": "categorical", "choices": [0.001]}}


def test_recipe_validate_names_the_path(tmp_path, capsys):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(with_search(space={"train.lrr": [1e-3]})))
    assert main(["recipe", "validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: search.space.train.lrr: unknown field") and err.count("\n") == 1


TWO = [{"metric": "accuracy"}, {"metric": "latency_ms"}]


def test_objectives_are_typed_and_saved_in_the_form_given():
    recipe = recipe_from_dict(with_search(space={"train.lr": [1e-3]}, sampler="nsga2", objectives=[
        {"metric": "accuracy"}, {"metric": "trainable_params"}, {"metric": "samples_per_second"},
        {"metric": "loss", "direction": "maximize"}]))
    cfg = recipe.search
    assert cfg.multi
    assert cfg.objective_names() == ["accuracy", "trainable_params", "samples_per_second", "loss"]
    assert cfg.directions() == ["maximize", "minimize", "maximize", "maximize"]  # auto, and as given
    saved = yaml.safe_load(dump_recipe(recipe))["search"]
    assert "metric" not in saved and "direction" not in saved and len(saved["objectives"]) == 4
    assert recipe_from_dict({**BASE, "search": saved}).search == cfg  # the saved form loads again
    single = yaml.safe_load(dump_recipe(recipe_from_dict(with_search(space={"train.lr": [1e-3]}))))
    assert "objectives" not in single["search"] and single["search"]["metric"] == "loss"


@pytest.mark.parametrize(("search", "expected"), [
    ({"metric": "accuracy", "objectives": TWO},
     "search: give either metric (one objective) or objectives (several), not both"),
    ({"direction": "maximize", "objectives": TWO}, "give either direction (one objective) or objectives"),
    ({"pruner": "hyperband", "objectives": TWO}, "search: pruner hyperband cannot judge a trial on several "
                                                 "objectives"),
    ({"objectives": [{"metric": "accuracy"}]}, "search.objectives: List should have at least 2 items"),
    ({"objectives": [{"metric": "accuracy"}, {"metric": "accuracy"}]}, "objectives repeat a metric"),
    ({"objectives": [{"metric": "accuracy"}, {"metric": "latency"}]},
     "search.objectives[1].metric: 'latency' is neither a classification metric nor a cost (allowed: loss, "
     "accuracy"),
    ({"objectives": [{"metric": "accuracy"}, {"metric": "latency_ms", "direction": "up"}]},
     "search.objectives[1].direction: must be one of"),
    ({"sampler": "nsga", "objectives": TWO}, "search.sampler: must be one of"),
])
def test_bad_objectives_fail_at_validation_naming_the_field(search, expected):
    message = error_of(space={"train.lr": [1e-3]}, **search)
    assert expected in message and message.startswith("r.yaml: ") and message.count("\n") == 0, message


def test_the_method_is_a_dimension_and_its_options_are_conditional():
    recipe = recipe_from_dict(with_search(space={
        "methods.0": ["lora", "freeze", "bottleneck"],
        "methods.0.lora.r": [2, 8],              # the recipe's own method
        "methods.0.freeze.bias": [False, True],  # sampled only when freeze is chosen
        "train.lr": [1e-3, 1e-2]}, objectives=TWO))
    assert recipe.search.space["methods.0"].choices == ["lora", "freeze", "bottleneck"]
    assert "search.space.methods.0: choose the method by name" in error_of(
        space={"methods.0": ["lora", "frieze"]})
    assert "search.space.methods.0: choose the method by name" in error_of(space={"methods.0": {"low": 0,
                                                                                                "high": 1}})
    assert "'1' is not an index of methods" in error_of(space={"methods.1": ["lora"]})
    # an option of a method nothing chooses, or one the method does not have
    assert "methods[0] is lora, not freeze (nor does search.space.methods.0 choose freeze)" in error_of(
        space={"methods.0.freeze.bias": [True]})
    assert "search.space.methods.0.lora.r: search.space.methods.0 never chooses lora" in error_of(
        space={"methods.0": ["freeze", "full"], "methods.0.lora.r": [2]})
    assert "search.space.methods.0.freeze.bais: unknown field 'bais'; did you mean 'bias'?" in error_of(
        space={"methods.0": ["lora", "freeze"], "methods.0.freeze.bais": [True]})
    # each option value is checked as a recipe of its method
    assert "search.space.methods.0.freeze.top: value -1 is refused" in error_of(
        space={"methods.0": ["lora", "freeze"], "methods.0.freeze.top": [-1, 1]})
    assert "the grid sampler cannot search an option of a method that search.space.methods.0 chooses" in \
        error_of(space={"methods.0": ["lora", "freeze"], "methods.0.freeze.bias": [True]}, sampler="grid")
    recipe_from_dict(with_search(space={"methods.0": ["lora", "freeze"]}, sampler="grid"))


def test_set_adds_or_replaces_a_dimension_whose_name_is_a_dotted_path(tmp_path):
    from tailorkit.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(with_search(space={"train.lr": [1e-3]})))
    recipe = load_recipe(path, ["search.space.train.lr={low: 1e-4, high: 1e-2, log: true}",
                                "search.space.methods.0.lora.r=[2, 8]"])
    space = recipe.search.space
    assert isinstance(space["train.lr"], FloatParam) and space["train.lr"].high == 1e-2
    assert space["methods.0.lora.r"].choices == [2, 8] and set(space) == {"train.lr", "methods.0.lora.r"}
    with pytest.raises(TailorError, match=r"--set search.space.train.lrr=\[1\].*did you mean 'lr'"):
        load_recipe(path, ["search.space.train.lrr=[1]"])
