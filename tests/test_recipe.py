"""The recipe schema: clear errors that name the dotted field, overrides, normalisation."""

from __future__ import annotations

import pytest
import yaml

from tailorkit import cli
from tailorkit.errors import TailorError
from tailorkit.methods import METHODS
from tailorkit.recipe import (
    Recipe,
    apply_overrides,
    dump_recipe,
    load_recipe,
    locate_field_error,
    parse_override,
    recipe_from_dict,
    reference_markdown,
)

BASE = {"model": {"name": "some-model"}, "data": {"train": "train.csv"}}


def _with(**sections) -> dict:
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


def _error(raw: dict) -> str:
    with pytest.raises(TailorError) as info:
        recipe_from_dict(raw)
    return str(info.value)


def test_minimal_recipe_gets_defaults():
    recipe = recipe_from_dict(BASE)
    assert recipe.task == "classification"
    assert [spec.model_dump() for spec in recipe.methods] == [{"full": {}}]
    assert recipe.train.optimizer == "adamw" and recipe.train.early_stopping is None
    assert recipe.data.split.seed == 0 and recipe.data.text_column == "text"


@pytest.mark.parametrize(("sections", "path", "hint"), [
    ({"train": {"lrr": 1e-3}}, "train.lrr", "lr"),
    ({"model": {"max_lenght": 64}}, "model.max_lenght", "max_length"),
    ({"data": {"split": {"seeed": 3}}}, "data.split.seeed", "seed"),
    ({"train": {"early_stopping": {"patiance": 2}}}, "train.early_stopping.patiance", "patience"),
    ({"methods": [{"freeze": {"topp": 2}}]}, "methods[0].freeze.topp", "top"),
    ({"sed": 1}, "sed", "seed"),
])
def test_unknown_field_names_dotted_path_and_suggests(sections, path, hint):
    message = _error(_with(**sections))
    assert f"{path}: unknown field" in message
    assert f"did you mean '{hint}'?" in message
    assert "\n" not in message


def test_unknown_field_lists_the_allowed_fields():
    message = _error(_with(train={"zzz": 1}))
    assert "did you mean" not in message  # nothing close
    assert "allowed: epochs, max_steps, batch_size" in message


@pytest.mark.parametrize(("sections", "path", "words"), [
    ({"train": {"batch_size": "many"}}, "train.batch_size", "integer"),
    ({"train": {"lr": "fast"}}, "train.lr", "number"),
    ({"train": {"precision": "fp8"}}, "train.precision", "must be one of"),
    ({"train": {"device": "gpu"}}, "train.device", "cuda:N"),
    ({"model": {"max_length": 4}}, "model.max_length", "greater than or equal to 8"),
    ({"train": {"class_weights": "balancd"}}, "train.class_weights", "'balanced' or a list"),
    ({"train": {"class_weights": [1, "x"]}}, "train.class_weights", "'balanced' or a list"),
])
def test_wrong_type_or_range_names_the_field(sections, path, words):
    message = _error(_with(**sections))
    assert message.startswith(f"recipe: {path}: ")
    assert words in message
    assert "\n" not in message


@pytest.mark.parametrize(("sections", "path", "allowed"), [
    ({"train": {"optimizer": "adagrad"}}, "train.optimizer", ["adamw", "adam", "sgd"]),
    ({"train": {"schedule": "cyclic"}}, "train.schedule",
     ["constant", "linear", "cosine", "step", "polynomial"]),
    ({"task": "translation"}, "task", ["classification", "regression"]),
])
def test_wrong_enum_value_lists_the_allowed_values(sections, path, allowed):
    message = _error(_with(**sections))
    assert f"{path}: must be one of" in message
    for value in allowed:
        assert f"'{value}'" in message


def test_class_weights_accepts_keyword_or_list():
    assert recipe_from_dict(_with(train={"class_weights": "balanced"})).train.class_weights == "balanced"
    assert recipe_from_dict(_with(train={"class_weights": [1, 2.5]})).train.class_weights == [1.0, 2.5]


def test_a_zero_class_weight_is_refused_before_it_makes_a_nan_loss():
    """A batch of only zero-weight classes averages its loss over a weight of 0: NaN."""
    with pytest.raises(TailorError, match=r"train.class_weights: .* number > 0 \(to leave a class out"):
        recipe_from_dict(_with(train={"class_weights": [0, 1]}))


def test_nesterov_without_momentum_is_refused_at_validation():
    with pytest.raises(TailorError, match="nesterov: true needs momentum > 0"):
        recipe_from_dict(_with(train={"optimizer": "sgd", "nesterov": True, "momentum": 0}))
    assert recipe_from_dict(_with(train={"optimizer": "sgd", "nesterov": True})).train.momentum == 0.9


@pytest.mark.parametrize(("methods", "expected"), [
    (["full"], [{"full": {}}]),
    ([{"freeze": {"top": 2}}, "layerwise_lr"], [{"freeze": {"top": 2}}, {"layerwise_lr": {}}]),
    ([{"freeze": None}], [{"freeze": {}}]),
    ([{"gradual_unfreeze": {"every": 2}}], [{"gradual_unfreeze": {"every": 2}}]),
])
def test_methods_as_strings_or_dicts(methods, expected):
    specs = recipe_from_dict(_with(methods=methods)).methods
    assert [spec.model_dump() for spec in specs] == expected  # dumped as written
    for spec in specs:  # validated once, into the method's own typed options
        assert type(spec.config) is METHODS[spec.name].Config


@pytest.mark.parametrize("recipe", [
    _with(methods=[{"lora": {"r": 4}}]),
    _with(methods=[{"lora": {"init_from": "some/adapter"}}]),  # init_from refuses other options
    _with(methods=[{"prompt": {"init": "text", "init_text": "Classify:"}}]),
    {"task": "image_classification", "model": {"name": "mobilenet-v2"}, "data": {"name": "digits"},
     "methods": ["features"]},  # features refuses `pooling` on an image model
])
def test_a_saved_recipe_lists_every_option_and_reads_back_the_same(recipe):
    """A run's recipe.yaml keeps the defaults it trained with, so a default changed later does
    not change what the run resumes or reloads with."""
    first = recipe_from_dict(recipe)
    saved = yaml.safe_load(dump_recipe(first))
    ((name, options),) = saved["methods"][0].items()
    assert set(options) == set(METHODS[name].Config.model_fields)
    again = recipe_from_dict(saved)
    assert [m.config for m in again.methods] == [m.config for m in first.methods]
    assert dump_recipe(again) == dump_recipe(first)


@pytest.mark.parametrize(("methods", "words"), [
    ("full", "methods must be a list"),
    (["nosuch"], "unknown method 'nosuch' (registered: "),
    ([{"freeze": {}, "full": {}}], "each method is a name or"),
    ([{"freeze": {"top": -1}}], "methods[0].freeze.top"),
    (["full", {"layerwise_lr": {"decay": 2}}], "methods[1].layerwise_lr.decay"),
    ([{"freeze": {"include": ["("]}}], "bad regex"),
])
def test_bad_methods(methods, words):
    assert words in _error(_with(methods=methods))


def test_unknown_method_lists_every_registered_one():
    from tailorkit.methods import METHODS

    message = _error(_with(methods=["nosuch"]))
    for name in METHODS:
        assert name in message


@pytest.mark.parametrize(("task", "metric", "ok"), [
    ("classification", "accuracy", True),
    ("classification", "f1_macro", True),
    ("classification", "loss", True),
    ("classification", "r2", False),
    ("classification", "mae", False),
    ("regression", "mae", True),
    ("regression", "r2", True),
    ("regression", "accuracy", False),
    ("regression", "f1_macro", False),
])
def test_early_stopping_metric_must_fit_the_task(task, metric, ok):
    raw = _with(task=task, train={"early_stopping": {"metric": metric}})
    if ok:
        assert recipe_from_dict(raw).train.early_stopping.metric == metric
    else:
        message = _error(raw)
        assert f"train.early_stopping.metric: '{metric}' is not a {task} metric" in message


@pytest.mark.parametrize(("task", "loss", "ok"), [
    ("classification", "cross_entropy", True), ("classification", "mse", False),
    ("regression", "mae", True), ("regression", "cross_entropy", False),
])
def test_loss_must_fit_the_task(task, loss, ok):
    raw = _with(task=task, train={"loss": loss})
    if ok:
        assert recipe_from_dict(raw).train.loss == loss
    else:
        assert f"train.loss: '{loss}' does not fit task {task}" in _error(raw)


@pytest.mark.parametrize("data", [{"train": None}, {"name": "bbc-news"}])
def test_data_needs_exactly_one_source(data):
    message = _error(_with(data=data))
    assert "exactly one of data.name" in message


# -- overrides ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "path", "value"), [
    ("train.lr=3e-5", ["train", "lr"], 3e-5),
    ("train.lr=0.001", ["train", "lr"], 0.001),
    ("train.batch_size=4", ["train", "batch_size"], 4),
    ("train.bf16=true", ["train", "bf16"], True),
    ("train.max_grad_norm=null", ["train", "max_grad_norm"], None),
    ("train.betas=[0.8, 0.9]", ["train", "betas"], [0.8, 0.9]),
    ("model.name=my/model=v2", ["model", "name"], "my/model=v2"),
    ("output_dir=runs/x", ["output_dir"], "runs/x"),
])
def test_parse_override_coerces_types(text, path, value):
    assert parse_override(text) == (path, value)


def test_overrides_apply_and_coerce_through_the_schema(tmp_path, write_recipe):
    path = write_recipe(BASE)
    recipe = load_recipe(path, ["train.lr=3e-5", "train.batch_size=4", "data.split.seed=7",
                                "train.early_stopping.metric=accuracy", "methods=[{freeze: {top: 1}}]",
                                "train.betas=[0.8, 0.9]"])
    assert recipe.train.lr == pytest.approx(3e-5) and isinstance(recipe.train.lr, float)
    assert recipe.train.batch_size == 4 and isinstance(recipe.train.batch_size, int)
    assert recipe.data.split.seed == 7
    assert recipe.train.early_stopping.metric == "accuracy"  # the section was created
    assert [spec.model_dump() for spec in recipe.methods] == [{"freeze": {"top": 1}}]
    assert recipe.methods[0].config.top == 1
    assert recipe.train.betas == (0.8, 0.9)


def test_later_override_wins():
    raw = {"train": {"lr": 1.0}}
    out = apply_overrides(raw, ["train.lr=2", "train.lr=3"])
    assert out["train"]["lr"] == 3


@pytest.mark.parametrize(("override", "words"), [
    ("train.lr", "expected dotted.path=value"),
    ("train.lr.value=1", "'lr' is not a section"),
    ("train.lrr=1", "train.lrr: unknown field; did you mean 'lr'?"),
    ("nosuch.field=1", "nosuch: unknown field"),
    ("train.batch_size=many", "train.batch_size: Input should be a valid integer"),
])
def test_bad_overrides(override, words, write_recipe):
    with pytest.raises(TailorError) as info:
        load_recipe(write_recipe(_with(train={"lr": 0.1})), [override])
    assert words in str(info.value)


# -- files ----------------------------------------------------------------------------------------

def test_errors_name_the_recipe_file(write_recipe):
    path = write_recipe(_with(train={"lrr": 1}))
    with pytest.raises(TailorError, match=rf"^{path}: train\.lrr: unknown field"):
        load_recipe(path)


@pytest.mark.parametrize(("content", "words"), [
    ("task: [unclosed", "not valid YAML"),
    ("- a\n- b\n", "a recipe is a YAML mapping"),
])
def test_unreadable_recipe_files(tmp_path, content, words):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(TailorError) as info:
        load_recipe(path)
    assert words in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_a_recipe_with_a_byte_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"model: {name: some-model}\ndata: {train: train.csv}\n# caf\xe9 reviews\n")
    with pytest.raises(TailorError) as info:
        load_recipe(path)
    assert str(info.value) == (f"{path}: line 3, column 6: byte 0xe9 is not valid utf-8; save the recipe "
                               "file as UTF-8")


@pytest.mark.parametrize(("key", "where"), [
    ("lr", "train.lr"), ("epochs", "train.epochs"), ("batch_size", "train.batch_size"),
    ("max_length", "model.max_length"), ("text_column", "data.text_column"),
    ("threads", "train.threads or compress.threads"),
])
def test_a_top_level_field_of_a_section_names_its_section(key, where):
    message = _error({**BASE, key: 3})
    assert message.startswith(f"recipe: {key}: unknown field; did you mean {where}? (allowed: task, ")
    assert "\n" not in message


def test_a_field_of_a_section_below_names_that_section():
    message = _error(_with(train={"patience": 2}))
    assert "train.patience: unknown field; did you mean train.early_stopping.patience?" in message


def test_missing_recipe_file(tmp_path):
    with pytest.raises(TailorError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_dump_then_load_round_trips(tmp_path):
    recipe = recipe_from_dict(_with(methods=[{"freeze": {"top": 1}}, "layerwise_lr"],
                                    train={"early_stopping": {"metric": "f1_macro", "patience": 2},
                                           "class_weights": [1.0, 2.0]}))
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_recipe(recipe))
    assert load_recipe(path) == recipe


def test_reference_lists_every_field():
    text = reference_markdown()
    for section in (Recipe, Recipe.model_fields["train"].annotation):
        for name in section.model_fields:
            assert f"| `{name}` |" in text


# -- `tailor recipe validate` -----------------------------------------------------------------------

def test_cli_validate_ok_prints_resolved_recipe(write_recipe, capsys):
    path = write_recipe(BASE)
    assert cli.main(["recipe", "validate", str(path), "--set", "train.lr=1e-4"]) == 0
    out, err = capsys.readouterr()
    assert "lr: 0.0001" in out and "optimizer: adamw" in out  # resolved, defaults filled in
    assert "valid" in err


def test_cli_validate_bad_recipe_exits_2_with_one_line(write_recipe, capsys):
    path = write_recipe(_with(train={"optimizer": "adagrad"}))
    assert cli.main(["recipe", "validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "train.optimizer: must be one of" in err


def test_cli_schema_prints_reference(capsys):
    assert cli.main(["recipe", "schema"]) == 0
    assert "#### `train.early_stopping`" in capsys.readouterr().out


def test_overrides_index_lists_and_open_entries_written_by_name():
    raw = apply_overrides({"methods": ["full", "lora"]}, ["methods.1.lora.r=4", "methods.0.full=null"])
    assert raw["methods"] == [{"full": None}, {"lora": {"r": 4}}]
    with pytest.raises(TailorError, match=r"'2' is not an index of the list \(0..1\)"):
        apply_overrides({"methods": ["full", "lora"]}, ["methods.2.lora.r=4"])


# -- every problem in one pass (#21 item 5) ---------------------------------------------------------

def test_every_problem_is_reported_in_one_pass():
    """Schema errors first, then the checks that combine fields, then the methods' own."""
    raw = _with(methods=[{"lora": {"rr": 4}}, "features"],
                train={"lrr": 0.1, "loss": "mse", "early_stopping": {"metric": "r2"}})
    lines = _error(raw).splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "methods[0].lora.rr", "train.lrr", "train.loss", "train.early_stopping.metric", "methods[1]"]
    assert all(line.startswith("recipe: ") for line in lines)
    assert "did you mean 'r'?" in lines[0] and "did you mean 'lr'?" in lines[1]


def test_a_refused_task_says_the_combined_checks_wait():
    lines = _error(_with(task="translation", train={"lrr": 1, "loss": "mse"})).splitlines()
    assert lines[0].startswith("recipe: task: must be one of")
    assert lines[1].startswith("recipe: train.lrr: unknown field")
    assert "run once the problems above are fixed" in lines[-1] and len(lines) == 3


def test_a_refused_field_that_hid_a_section_check_is_found_too():
    """data.text_column is refused, and data also names two sources: both are reported."""
    lines = _error(_with(data={"name": "bbc-news", "text_column": 5})).splitlines()
    assert lines[0].startswith("recipe: data.text_column: ")
    assert "exactly one of data.name" in lines[1]


def test_search_values_are_checked_once_the_rest_is_sound():
    space = {"search": {"space": {"train.lr": {"low": 1e-5, "high": 1e-3}}}}
    assert "search.space" not in _error(_with(train={"loss": "mse"}, **space))
    raw = _with(search={"space": {"train.loss": {"choices": ["auto", "mse"]}}})
    assert "search.space.train.loss: value 'mse' is refused" in _error(raw)


# -- `--set` is named as the source of its problems (#21 item 10) ----------------------------------

@pytest.mark.parametrize(("override", "line"), [
    ("train.lrr=1", "--set train.lrr=1: train.lrr: unknown field; did you mean 'lr'?"),
    ("methods=[{lora: {rr: 1}}]", "--set methods=[{lora: {rr: 1}}]: methods[0].lora.rr: unknown field"),
    ("methods.0.freeze.top=-1", "--set methods.0.freeze.top=-1: methods[0].freeze.top: "),
    ("train.loss=mse", "--set train.loss=mse: train.loss: 'mse' does not fit task classification"),
])
def test_a_problem_set_on_the_command_line_names_the_set(override, line, write_recipe):
    path = write_recipe(_with(methods=[{"freeze": {"top": 1}}], train={"optimiser": "sgd"}))
    with pytest.raises(TailorError) as info:
        load_recipe(path, [override])
    lines = str(info.value).splitlines()
    assert any(x.startswith(line) for x in lines), lines
    assert any(x.startswith(f"{path}: train.optimiser: unknown field") for x in lines)  # the file's own


# -- `tailor recipe validate` shows the task's fields; --full all (#21 item 15) ----------------------

def test_validate_leaves_out_the_fields_of_other_tasks(write_recipe, capsys):
    path = write_recipe(BASE)
    assert cli.main(["recipe", "validate", str(path)]) == 0
    short = capsys.readouterr().out
    assert cli.main(["recipe", "validate", str(path), "--full"]) == 0
    full = capsys.readouterr().out
    assert full == dump_recipe(recipe_from_dict(BASE))  # what the run saves
    for key in ("generation:", "chat:", "image:", "mlm_probability:", "image_column:", "pretrained:"):
        assert key in full and key not in short
    for key in ("text_column:", "label_column:", "stratify:", "class_weights:", "max_length:"):
        assert key in short
    assert len(short.splitlines()) < 0.7 * len(full.splitlines())


@pytest.mark.parametrize(("task", "shown", "hidden"), [
    ("causal_lm", ["generation:", "chat:", "template:"], ["label_column:", "image:", "class_weights:"]),
    ("mlm", ["mlm_probability:", "text_column:"], ["label_column:", "generation:", "stratify:"]),
    ("regression", ["label_column:"], ["class_weights:", "stratify:", "generation:"]),
    ("image_classification", ["image:", "image_column:", "pretrained:"], ["text_column:", "max_length:"]),
])
def test_each_task_shows_its_own_fields(task, shown, hidden):
    text = dump_recipe(recipe_from_dict(_with(task=task)), full=False)
    for key in shown:
        assert key in text
    for key in hidden:
        assert key not in text


def test_the_fields_tasks_read_are_recipe_fields():
    from pydantic import BaseModel

    from tailorkit.tasks import TASKS

    for task in TASKS.values():
        for path in task.reads:
            model = Recipe
            for part in path.split("."):
                assert isinstance(model, type) and issubclass(model, BaseModel), (task.name, path)
                assert part in model.model_fields, (task.name, path)
                model = model.model_fields[part].annotation


@pytest.mark.parametrize(("message", "located"), [
    ("model.name: 'x' is not there", "r.yaml: model.name: 'x' is not there"),
    ("train.class_weights has 3 values", "r.yaml: train.class_weights has 3 values"),
    ("data.train: a.csv: line 8: bad byte", "--set data.train=a.csv: data.train: a.csv: line 8: bad byte"),
    ("data.csv: row 3: missing label", "data.csv: row 3: missing label"),  # a file, not a field
    ("output_dir runs/x holds a study", "output_dir runs/x holds a study"),
    ("freeze.top=9, but the model has 6 blocks", "freeze.top=9, but the model has 6 blocks"),
])
def test_a_problem_found_while_the_recipe_runs_is_located_when_it_names_a_field(message, located):
    assert locate_field_error(message, recipe_from_dict(BASE), "r.yaml", ["data.train=a.csv"]) == located


def test_a_bare_off_in_yaml_turns_label_errors_off(tmp_path):
    """YAML 1.1 reads `off` as false."""
    path = tmp_path / "r.yaml"
    path.write_text("model: {name: m}\ndata: {train: t.csv, clean: {label_errors: off}}\n")
    assert load_recipe(path).data.clean.label_errors == "off"


@pytest.mark.parametrize(("task", "train"), [
    ("regression", {"class_weights": "balanced"}), ("regression", {"label_smoothing": 0.2}),
    ("causal_lm", {"class_weights": [1, 2]}),
])
def test_a_training_option_only_other_tasks_read_is_refused(task, train):
    """Class weights and label smoothing did nothing to a regression, silently."""
    name = next(iter(train))
    with pytest.raises(TailorError, match=rf"train.{name}: .* does not apply to task {task} \(only "
                                          r"classification, image_classification read it\); leave it out"):
        recipe_from_dict(_with(task=task, train=train))
    assert recipe_from_dict(_with(task="regression")).train.class_weights == "none"



def test_a_method_refused_as_a_whole_is_one_line():
    """Its options dropped for the next round left `{}` in the list: a second, spurious line."""
    with pytest.raises(TailorError) as err:
        recipe_from_dict(_with(methods=[{"prompt": {"init": "text"}}]))
    assert str(err.value) == ("recipe: methods[0].prompt: init: text needs init_text, and init_text needs "
                              "init: text")


def test_regression_refuses_class_balancing_in_augmentation():
    with pytest.raises(TailorError, match=r"data.augment.balance: True does not apply to task regression"):
        recipe_from_dict(_with(task="regression", data={"augment": {"balance": True}}))
