"""A search space is a set of dotted recipe paths; this module checks them and applies them
(`tailorkit.search` turns them into Optuna distributions and trials).

A path names a recipe field (`train.lr`, `model.max_length`, `seed`) or a method option as
`methods.<index>.<method>.<option>` (`methods.0.lora.r`): the index says which entry of
`methods:`, the name guards against the list changing under the space. Every path is
checked against the schema, and each bound or choice is validated as a real recipe
(`tailorkit.recipe.check_recipe`), so a typo or an out-of-range value fails when the recipe
is read, naming `search.space.<path>`.
"""

from __future__ import annotations

import copy
import difflib
import math
import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from tailorkit.config.methods import METHOD_CONFIGS
from tailorkit.config.recipe import Recipe
from tailorkit.config.search import COSTS, CategoricalParam, FloatParam, IntParam, SearchConfig

METHOD_PATH = "methods.<index>.<method>.<option>, e.g. methods.0.lora.r"
MAX_GRID = 10_000  # a bigger grid is a mistake (a float step too fine), not a plan


def check_space(recipe, task) -> None:
    """Raise ValueError naming `search.space.<path>` (or `search.<field>`) for a path the recipe
    does not have or a metric the task does not report; runs when the recipe is loaded, before
    any data or model loads. Each value is then checked as a real recipe (`space_candidates`)."""
    cfg: SearchConfig = recipe.search
    if cfg.objectives is None and cfg.metric not in task.metrics:
        raise ValueError(f"search.metric: '{cfg.metric}' is not a {task.name} metric "
                         f"(allowed: {', '.join(task.metrics)})")
    for i, objective in enumerate(cfg.objectives or []):
        if objective.metric not in task.metrics and objective.metric not in COSTS:
            raise ValueError(f"search.objectives[{i}].metric: '{objective.metric}' is neither a {task.name} "
                             f"metric nor a cost (allowed: {', '.join([*task.metrics, *COSTS])})")
    if cfg.cv_folds and not task.table:
        raise ValueError(f"search.cv_folds: cross-validation works on classification and regression "
                         f"tables, not {task.name}")
    for path, param in cfg.space.items():
        where = f"search.space.{path}"
        _check_path(recipe, path, where)
        data_step = path.split(".")[1:2] if path.startswith("data.") else None
        if cfg.cv_folds and data_step is not None and data_step not in (["clean"], ["augment"]):
            raise ValueError(f"{where}: with search.cv_folds the folds are cut once per study from the "
                             "recipe's data; only data.clean and data.augment options can vary per trial")
        _check_step(param, where)
        if cfg.sampler == "grid" and condition(cfg, path) is not None:
            raise ValueError(f"{where}: the grid sampler cannot search an option of a method that "
                             f"search.space.{condition(cfg, path)[0]} chooses; use random, tpe or nsga2")
    if cfg.sampler == "grid":
        size = math.prod(len(v) for v in grid_values(cfg).values())
        if size > MAX_GRID:
            raise ValueError(f"search.space: the grid has {size:,} points (most {MAX_GRID:,}); use "
                             "coarser steps, fewer choices, or sampler random/tpe")


def space_candidates(recipe) -> Iterator[tuple[str, Any, dict]]:
    """(`search.space.<path>`, value, plain recipe without its search) for every bound and
    choice: each must be a valid recipe."""
    base = recipe.model_dump(mode="json", exclude={"search"})
    for path, param in recipe.search.space.items():
        chosen = condition(recipe.search, path)
        for value in candidate_values(param):
            # an option of a method the space chooses is checked on that method
            yield f"search.space.{path}", value, apply_params(base, {**dict([chosen] if chosen else []),
                                                                     path: value})


def method_choice(path: str) -> bool:
    """`methods.<index>`: the space chooses the method itself (its choices are method names)."""
    parts = path.split(".")
    return len(parts) == 2 and parts[0] == "methods" and parts[1].isdigit()


def condition(cfg: SearchConfig, path: str) -> tuple[str, str] | None:
    """(`methods.<index>`, method) when `path` is an option of a method that the space chooses
    at that index: the option is sampled only in trials that choose that method."""
    parts = path.split(".")
    if len(parts) < 4 or parts[0] != "methods":
        return None
    choice = cfg.space.get(f"methods.{parts[1]}")
    if isinstance(choice, CategoricalParam) and parts[2] in choice.choices:
        return f"methods.{parts[1]}", parts[2]
    return None


def candidate_values(param: FloatParam | IntParam | CategoricalParam) -> list[Any]:
    """Values that must all be valid recipe values: the bounds, or every choice."""
    if isinstance(param, CategoricalParam):
        return list(param.choices)
    return [param.low, param.high]


def _check_step(param, where: str) -> None:
    step = getattr(param, "step", None)
    if isinstance(param, CategoricalParam) or not step:
        return
    n = (param.high - param.low) / step
    if abs(n - round(n)) > 1e-9:
        raise ValueError(f"{where}: high - low ({param.high - param.low}) is not a multiple of "
                         f"step ({step})")


def _check_path(recipe, path: str, where: str) -> None:
    parts = path.split(".")
    if parts[0] in ("output_dir", "search"):
        raise ValueError(f"{where}: {parts[0]} cannot be searched")
    model: type[BaseModel] = Recipe
    if method_choice(path):
        _check_method_choice(recipe, path, where)
        return
    if parts[0] == "methods":
        if len(parts) < 4:
            raise ValueError(f"{where}: a method option is written {METHOD_PATH}")
        n = len(recipe.methods)
        if not parts[1].isdigit() or int(parts[1]) >= n:
            raise ValueError(f"{where}: '{parts[1]}' is not an index of methods "
                             f"(the recipe has {n}: 0..{n - 1}); write {METHOD_PATH}")
        actual = recipe.methods[int(parts[1])].name
        chooser = recipe.search.space.get(f"methods.{parts[1]}")
        if isinstance(chooser, CategoricalParam) and parts[2] not in chooser.choices:
            raise ValueError(f"{where}: search.space.methods.{parts[1]} never chooses {parts[2]}; add it "
                             "to its choices or drop this option")
        if parts[2] != actual and condition(recipe.search, path) is None:
            raise ValueError(f"{where}: methods[{parts[1]}] is {actual}, not {parts[2]} (nor does "
                             f"search.space.methods.{parts[1]} choose {parts[2]})")
        model, parts = METHOD_CONFIGS[parts[2]], parts[3:]
    for i, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            hint = difflib.get_close_matches(part, list(fields), n=1)
            did = f"; did you mean '{hint[0]}'?" if hint else ""
            raise ValueError(f"{where}: unknown field '{part}'{did} (allowed: {', '.join(fields)})")
        annotation = fields[part].annotation
        nested = _nested_model(annotation)
        if i == len(parts) - 1:
            if nested is not None:
                raise ValueError(f"{where}: '{part}' is a section; search one of its fields "
                                 f"({', '.join(nested.model_fields)})")
            return
        if nested is not None:
            model = nested
        elif _is_dict(annotation):  # free-form options (features.options.C): any key below
            return
        else:
            raise ValueError(f"{where}: '{part}' is a value, not a section")


def _check_method_choice(recipe, path: str, where: str) -> None:
    index, n = int(path.split(".")[1]), len(recipe.methods)
    if index >= n:
        raise ValueError(f"{where}: '{index}' is not an index of methods (the recipe has {n}: 0..{n - 1})")
    param = recipe.search.space[path]
    unknown = [c for c in getattr(param, "choices", []) if c not in METHOD_CONFIGS]
    if not isinstance(param, CategoricalParam) or unknown:
        raise ValueError(f"{where}: choose the method by name from a list, e.g. [lora, freeze] "
                         f"(methods: {', '.join(sorted(METHOD_CONFIGS))})")


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    for arg in (typing.get_args(annotation) or (annotation,)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _is_dict(annotation: Any) -> bool:
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    return any(typing.get_origin(a) is dict or a is dict for a in options)


def set_path(raw: dict, path: str, value: Any) -> None:
    """Write `value` at a dotted path of a plain recipe dict; list entries by index, missing
    sections created (as `--set` does)."""
    parts = path.split(".")
    node: Any = raw
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
            continue
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


def apply_params(base: dict, params: dict[str, Any]) -> dict:
    """A copy of the plain recipe `base` with every searched path set."""
    raw = copy.deepcopy(base)
    for path in sorted(params, key=lambda p: p.count(".")):  # a chosen method before its options
        value = params[path]
        if method_choice(path):
            methods, index = raw["methods"], int(path.split(".")[1])
            current = methods[index]
            name = current if isinstance(current, str) else next(iter(current))
            # the recipe's own entry keeps its options when chosen; another method starts from its defaults
            methods[index] = {value: {}} if value != name else (
                {name: {}} if isinstance(current, str) else current)
            continue
        set_path(raw, path, value)
    return raw


def grid_values(cfg: SearchConfig) -> dict[str, list[Any]]:
    """Every value of every parameter; the grid sampler needs each to be discrete."""
    out = {}
    for path, param in cfg.space.items():
        if isinstance(param, CategoricalParam):
            out[path] = list(param.choices)
        elif isinstance(param, IntParam):
            out[path] = list(range(param.low, param.high + 1, param.step))
        elif param.step is None:
            raise ValueError(f"search.space.{path}: the grid sampler needs a discrete space; give "
                             "this float a step, or choices")
        else:
            n = round((param.high - param.low) / param.step)
            out[path] = [round(param.low + i * param.step, 12) for i in range(n + 1)]
    return out
