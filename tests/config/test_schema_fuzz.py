"""Schema fuzz test (#15): recipes generated field by field from the config models — values of
the right type and the wrong one, numbers at and past their bounds, NaN and infinities, unknown
keys — are either accepted or refused with a TailorError whose every line names the source.
Nothing else may escape (no traceback), nothing loads a model, and an accepted recipe holds no
NaN or infinite number and has its learning rate resolved.

Three generators: whole recipes of random sections (mostly refused, many problems at once); a
sound recipe of each kind with up to three fields changed (mostly past the schema, into the
checks that combine fields); `train:` and `methods:` on a sound model and data. Then a plain
sweep: every float field of every section, method and compression step, one at a time, set to
NaN, +inf and -inf, must be refused naming it.

Bounded: 200 examples per generator (a quarter through `tailor recipe validate`), seeded with
15; the seed is printed (pytest -s). Other draws: TAILOR_FUZZ_SEED=<n>; more of them:
TAILOR_FUZZ_EXAMPLES=<n>."""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import math
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tailorkit import cli
from tailorkit.config import COMPRESS_CONFIGS, METHOD_CONFIGS, MethodSpec, Recipe, StepSpec
from tailorkit.config.tasks import TASK_NAMES
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict

SEED = int(os.environ.get("TAILOR_FUZZ_SEED", "15"))
EXAMPLES = int(os.environ.get("TAILOR_FUZZ_EXAMPLES", "200"))
SOURCE = "fuzz.yaml"
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Any YAML value: what a wrong type looks like.
KEYS = st.text(max_size=6) | st.integers(-3, 3)
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=6)
# Plausible strings where a name matters, so the checks past the schema run too.
NAMES = {
    "task": st.sampled_from(sorted(TASK_NAMES)),
    "model.name": st.sampled_from(["minilm-l6", "smollm2-135m", "mobilenet-v2", "some/model", ""]),
    "data.name": st.sampled_from(["bbc-news", "tweet-sentiment", "chatterbot-qa", "digits", "nope"]),
    "data.train": st.sampled_from(["train.csv", "data/missing.jsonl", "a\x00b.csv"]),
    "metric": st.sampled_from(["loss", "accuracy", "f1_macro", "r2", "perplexity", "nope"]),
    "teacher": st.sampled_from(["runs/teacher", "", "a\x00b"]),
}
PATHS = st.sampled_from(["train.lr", "train.epochs", "train.batch_size", "seed", "model.max_length",
                         "methods.0.lora.r", "methods.0.full.x", "methods.9.lora.r", "train",
                         "output_dir", "nope.x", "train.early_stopping.patience"])
UNKNOWN = st.sampled_from(["lr", "epochs", "zzz", "name", "methods", "r", "Train"])


def _numeric(annotation: Any) -> bool:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _numeric(args[0])
    if origin in (typing.Union, types.UnionType, tuple, list):
        return any(_numeric(a) for a in args if a is not Ellipsis)
    return annotation is float


def _models(annotation: Any) -> list[type[BaseModel]]:
    options = typing.get_args(annotation) or (annotation,)
    return [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]


def _bounds(metadata: list) -> list[float]:
    """The numbers at and just past each bound the field declares."""
    out: list[float] = []
    for item in metadata:
        for attr in ("ge", "gt", "le", "lt"):
            bound = getattr(item, attr, None)  # annotated_types' Ge, Gt, Le, Lt
            if isinstance(bound, int | float) and not isinstance(bound, bool):
                out += [bound, bound - 1, bound + 1, bound - 1e-9, bound + 1e-9]
    return out


def _number(kind: type, metadata: list) -> st.SearchStrategy:
    edges = _bounds(metadata)
    if kind is int:
        base = st.integers(-(2**64), 2**64) | st.sampled_from([0, 1, -1, 2, 10**9])
        return base | st.sampled_from([int(e) for e in edges]) if edges else base
    special = st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 1e-12, 1e308, math.inf, -math.inf, math.nan])
    return st.floats() | special | (st.sampled_from(edges) if edges else st.nothing())


def _value(annotation: Any, metadata: list, where: str, depth: int) -> st.SearchStrategy:
    """Values of the declared type (mostly), anything at all (sometimes)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _value(args[0], [*metadata, *getattr(args[1], "metadata", [])], where, depth)
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(_value(a, metadata, where, depth) for a in args))
    if origin is Literal:
        return st.sampled_from(args)
    if annotation is type(None):
        return st.none()
    if annotation is bool:
        return st.booleans()
    if annotation in (int, float):
        return _number(annotation, metadata)
    if annotation is str:
        name = where.rsplit(".", 1)[-1]
        named = NAMES.get(where, NAMES.get(name))
        return named | st.text(max_size=12) if named is not None else st.text(max_size=12)
    if origin is list:
        return st.lists(_value(args[0], [], where, depth), max_size=3)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(_value(args[0], [], where, depth), max_size=3)
        return st.tuples(*(_value(a, [], where, depth) for a in args)).map(list) | st.lists(JUNK, max_size=4)
    if origin is dict:
        keys = PATHS if where.endswith("space") else st.text(max_size=8)
        return st.dictionaries(keys, _value(args[1], [], where, depth + 1), max_size=3)
    if annotation is MethodSpec:
        return _plugin(METHOD_CONFIGS, where, depth)
    if annotation is StepSpec:
        return _plugin(COMPRESS_CONFIGS, where, depth)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _section(annotation, where, depth + 1)
    return JUNK


def _field(model: type[BaseModel], name: str, where: str, depth: int) -> st.SearchStrategy:
    info = model.model_fields[name]
    typed = _value(info.annotation, list(info.metadata), where, depth)
    return st.one_of(typed, typed, typed, JUNK)  # mostly the right type


def _section(model: type[BaseModel], where: str, depth: int) -> st.SearchStrategy:
    """A mapping with any subset of the model's fields, and sometimes an unknown key."""
    if depth > 4:
        return st.just({})
    fields = {name: _field(model, name, f"{where}.{name}".lstrip("."), depth) for name in model.model_fields}
    known = st.fixed_dictionaries({}, optional=fields)
    unknown = st.dictionaries(UNKNOWN, JUNK, max_size=1)
    return st.tuples(known, unknown).map(lambda parts: {**parts[1], **parts[0]})


def _plugin(table: dict[str, type[BaseModel]], where: str, depth: int) -> st.SearchStrategy:
    """A list entry: `name`, `{name: {options}}`, an unknown name, or junk."""
    names = sorted(table)
    with_options = st.sampled_from(names).flatmap(
        lambda name: _section(table[name], f"{where}.{name}", depth + 1).map(lambda opts: {name: opts}))
    return st.one_of(st.sampled_from(names), with_options, with_options, st.just("no-such-plugin"), JUNK)


def recipes() -> st.SearchStrategy:
    """A whole recipe: model and data nearly always (they are required), the rest any subset."""
    fields = {name: _field(Recipe, name, name, 0) for name in Recipe.model_fields}
    required = {name: fields.pop(name) for name in ("model", "data")}
    body = st.fixed_dictionaries({}, optional=fields)
    top_unknown = st.dictionaries(UNKNOWN, JUNK, max_size=1)
    return st.tuples(st.fixed_dictionaries(required), body, top_unknown).map(
        lambda parts: {**parts[2], **parts[0], **parts[1]})


# Sound recipes of every kind; `edited_recipes` changes a few fields of one, so most draws get
# past the schema to the checks that combine fields (task, methods, search, compress).
BASES = [
    {"model": {"name": "minilm-l6"}, "data": {"name": "bbc-news"}},
    {"task": "causal_lm", "model": {"name": "smollm2-135m"}, "data": {"name": "chatterbot-qa"},
     "methods": ["lora"]},
    {"task": "image_classification", "model": {"name": "mobilenet-v2"}, "data": {"name": "digits"}},
    {"task": "regression", "model": {"name": "minilm-l6"},
     "data": {"train": "t.csv", "label_column": "score"}},
    {"task": "mlm", "model": {"name": "minilm-l6"}, "data": {"name": "bbc-news"}},
    {"model": {"name": "minilm-l6"}, "data": {"name": "bbc-news"}, "methods": [{"lora": {"r": 8}}],
     "search": {"space": {"train.lr": {"low": 1e-5, "high": 1e-3, "log": True}, "methods.0.lora.r": [4, 8]},
                "metric": "accuracy"}},
    {"model": {"name": "minilm-l6"}, "data": {"name": "bbc-news"},
     "compress": {"steps": [{"prune": {"amount": 0.5}}, "quantize"]}},
]


def _leaves(model: type[BaseModel], prefix: tuple = ()) -> list[tuple[tuple, st.SearchStrategy]]:
    """(path, strategy) of every field, sections and the fields inside them."""
    out = []
    for name in model.model_fields:
        path = (*prefix, name)
        out.append((path, _field(model, name, ".".join(path), len(path))))
        for sub in _models(model.model_fields[name].annotation):
            if sub not in (MethodSpec, StepSpec):
                out += _leaves(sub, path)
    return out


def _set(raw: dict, path: tuple, value: Any) -> dict:
    node = raw
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value
    return raw


def edited_recipes() -> st.SearchStrategy:
    leaves = _leaves(Recipe)
    edit = st.sampled_from(range(len(leaves))).flatmap(
        lambda i: leaves[i][1].map(lambda value, i=i: (leaves[i][0], value)))
    def edited(parts: tuple) -> dict:
        base, edits = parts
        return functools.reduce(lambda raw, e: _set(raw, *e), edits, copy.deepcopy(BASES[base]))

    return st.tuples(st.sampled_from(range(len(BASES))), st.lists(edit, max_size=3)).map(edited)


@contextlib.contextmanager
def no_model_loading():
    """Reading a recipe must never load weights: any attempt fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("recipe validation tried to load a model")

    with mock.patch("transformers.modeling_utils.PreTrainedModel.from_pretrained", refuse), \
            mock.patch("torch.load", refuse), mock.patch("safetensors.torch.load_file", refuse):
        yield


def _check(raw: dict) -> None:
    try:
        with no_model_loading():
            recipe = recipe_from_dict(raw, source=SOURCE)
    except TailorError as err:
        lines = str(err).splitlines()
        assert lines, "an empty error"
        for line in lines:
            assert line.startswith(f"{SOURCE}: "), f"a line that does not name the source: {line!r}"
        return
    assert isinstance(recipe, Recipe)
    assert recipe.train.lr is not None, "train.lr was not resolved"
    _assert_finite(recipe.model_dump(mode="python"), "recipe")


def _assert_finite(value: Any, where: str) -> None:
    """An accepted recipe holds no NaN or infinite number, at any depth (methods' options too)."""
    if isinstance(value, float):
        assert math.isfinite(value), f"{where} = {value} was accepted"
    elif isinstance(value, dict):
        for key, item in value.items():
            _assert_finite(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _assert_finite(item, f"{where}[{i}]")
    elif isinstance(value, BaseModel):
        _assert_finite(value.model_dump(mode="python"), where)


def test_print_seed():
    print(f"schema fuzz seed: {SEED}, {EXAMPLES} examples (TAILOR_FUZZ_SEED / TAILOR_FUZZ_EXAMPLES)")


@seed(SEED)
@FUZZ
@given(raw=recipes())
def test_any_recipe_is_accepted_or_refused_with_located_lines(raw):
    _check(raw)


def test_every_base_is_sound():
    for raw in BASES:
        assert isinstance(recipe_from_dict(copy.deepcopy(raw)), Recipe)


@seed(SEED)
@FUZZ
@given(raw=edited_recipes())
def test_a_sound_recipe_with_a_few_fields_changed(raw):
    _check(raw)


@seed(SEED)
@FUZZ
@given(train=_section(Recipe.model_fields["train"].annotation, "train", 1),
       methods=st.lists(_plugin(METHOD_CONFIGS, "methods", 1), min_size=1, max_size=3))
def test_train_and_methods_fields(train, methods):
    """The sections with the most numbers, on a sound model and data, so the checks that
    combine fields see them (a broken model or data section stops those checks)."""
    _check({"model": {"name": "minilm-l6"}, "data": {"name": "bbc-news"}, "train": train,
            "methods": methods})


@seed(SEED)
@settings(FUZZ, max_examples=max(EXAMPLES // 4, 10))
@given(raw=recipes())
def test_recipe_validate_exits_0_or_2_without_a_traceback(raw, tmp_path_factory):
    """The same through the command line, from a YAML file: exit 0, or exit 2 with one line
    per problem, each naming the file."""
    path = Path(tmp_path_factory.mktemp("fuzz")) / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    out, err = io.StringIO(), io.StringIO()
    with no_model_loading(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["recipe", "validate", str(path)])
    assert code in (0, 2), err.getvalue()
    assert "Traceback" not in err.getvalue()
    if code == 2:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        assert lines and all(str(path) in line for line in lines), err.getvalue()


# -- every number field, one at a time: NaN and the infinities are refused, naming the field ----

SOUND = {"model": {"name": "minilm-l6"}, "data": {"name": "bbc-news"}}
SPACE = {"train.lr": {"low": 1e-5, "high": 1e-3}}


def _float_fields(model: type[BaseModel], prefix: tuple = ()) -> list[tuple]:
    """(path, annotation) of every field that takes a float, through nested sections."""
    out = []
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        if _numeric(info.annotation):
            out.append((path, info.annotation))
        for sub in _models(info.annotation):
            out += _float_fields(sub, path)
    return out


def _float_cases() -> list[tuple[str, dict]]:
    """One minimal recipe per float field, with a placeholder where the value goes."""
    cases = []
    for path, annotation in _float_fields(Recipe):
        if path[0] in ("search", "compress"):
            continue  # below, with the parts they require
        cases.append((".".join(path), annotation, lambda v, p=path: _nest(p, v)))
    for name, config in sorted(METHOD_CONFIGS.items()):
        required = {"teacher": "runs/teacher"} if name == "distill" else {}
        for path, annotation in _float_fields(config):
            cases.append((f"methods[0].{name}.{'.'.join(path)}", annotation,
                          lambda v, n=name, p=path, r=required: {"methods": [{n: {**r, **_nest(p, v)}}]}))
    for name, config in sorted(COMPRESS_CONFIGS.items()):
        for path, annotation in _float_fields(config):
            cases.append((f"compress.steps[0].{name}.{'.'.join(path)}", annotation,
                          lambda v, n=name, p=path: {"compress": {"steps": [{n: _nest(p, v)}]}}))
    for field in ("low", "high", "step"):
        cases.append((f"search.space.train.lr.{field}", float,
                      lambda v, f=field: {"search": {"space": {"train.lr": {**SPACE["train.lr"], f: v}}}}))
    cases.append(("search.space.train.lr.choices", float,
                  lambda v: {"search": {"space": {"train.lr": [1e-4, v]}}}))
    cases.append(("search.timeout", float, lambda v: {"search": {"space": SPACE, "timeout": v}}))
    return cases


def _nest(path: tuple, value: Any) -> dict:
    out: Any = value
    for part in reversed(path):
        out = {part: out}
    return out


def _placed(annotation: Any, value: float) -> Any:
    """The value where the field wants it: a tuple field gets it as its first member."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _placed(args[0], value)
    if origin is tuple:
        return [value] * (len(args) if args[-1] is not Ellipsis else 1)
    if origin in (typing.Union, types.UnionType):  # `none | balanced | list[float]`: the list
        lists = [a for a in args if typing.get_origin(a) in (list, tuple)]
        return _placed(lists[0], value) if lists else value
    if origin is list:
        return [1.0, value]
    return value


FLOAT_CASES = _float_cases()


def test_every_float_field_is_swept():
    assert len(FLOAT_CASES) > 30
    names = {case[0] for case in FLOAT_CASES}
    assert {"train.lr", "train.epochs", "train.betas", "methods[0].lora.alpha",
            "data.image.mean", "search.space.train.lr.low"} <= names


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(("where", "annotation", "build"), FLOAT_CASES, ids=[c[0] for c in FLOAT_CASES])
def test_non_finite_numbers_are_refused_naming_the_field(where, annotation, build, value):
    raw = {**SOUND, **build(_placed(annotation, value))}
    with no_model_loading(), pytest.raises(TailorError) as refused:
        recipe_from_dict(raw, source=SOURCE)
    lines = str(refused.value).splitlines()
    assert all(line.startswith(f"{SOURCE}: ") for line in lines), lines
    assert any("finite number" in line for line in lines), lines


@pytest.mark.parametrize("raw", [
    {"model": {"name": "minilm-l6"}, "data": {"name": "bbc-news"},
     "methods": [{"lora": {"alpha": math.inf}}]},
    {"model": {"name": "minilm-l6"}, "data": {"name": "bbc-news"},
     "methods": [{"features": {"head_epochs": math.inf}}]},
    {"model": {"name": "minilm-l6"}, "data": {"name": "bbc-news"}, "methods": ["lora", "ia3"]},
])
def test_found_by_fuzzing(raw):
    """Cases the fuzzer found once, kept as plain examples."""
    _check(raw)
