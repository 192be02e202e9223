"""Recipe files: YAML loading, dotted `--set` overrides, the checks that need tasks and methods,
and the reference generated from the schema.

The schema itself is `tailorkit.config` (every field declared once). `load_recipe` reads YAML,
applies overrides (`train.lr=3e-5`) and validates; any error names the field and, for an unknown
field, the allowed ones. Importing this module registers every task and method, so the schema's
`task:` and `methods:` know them.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from tailorkit.compress import STEPS, build_steps
from tailorkit.config import (
    CategoricalParam,
    ChatColumns,
    CompressConfig,
    DataConfig,
    EarlyStopping,
    FloatParam,
    GenerationConfig,
    ImageTransformConfig,
    IntParam,
    MethodSpec,
    ModelConfig,
    PruningConfig,
    Recipe,
    SearchConfig,
    SplitConfig,
    StepSpec,
    TrainConfig,
    format_validation_error,
)
from tailorkit.config.space import check_space, space_candidates
from tailorkit.errors import TailorError
from tailorkit.methods import METHODS, build_methods, model_owner
from tailorkit.tasks import TASKS, task_of

__all__ = ["DataConfig", "GenerationConfig", "ModelConfig", "Recipe", "TrainConfig", "check_recipe",
           "dump_recipe", "format_validation_error", "load_recipe", "recipe_from_dict", "reference_markdown"]


def check_recipe(recipe: Recipe) -> None:
    """What the schema alone cannot see: options that do not fit the task, methods that do not
    fit the task or each other, and a search space's every path and value. Raises ValueError
    naming the field."""
    task = task_of(recipe)
    task.check_recipe(recipe)
    methods = build_methods(recipe.methods)
    if recipe.model.quantize_base != "none" and not any(m.trains_on_quantized_base for m in methods):
        able = sorted(name for name, cls in METHODS.items() if cls.trains_on_quantized_base)
        raise ValueError(f"model.quantize_base: a 4-bit base cannot train; add a method that trains on "
                         f"it ({', '.join(able)}: QLoRA) or set quantize_base: none")
    for i, method in enumerate(methods):
        if task.modality not in method.modalities:
            raise ValueError(f"methods[{i}]: {method.name} does not apply to {task.name} models "
                             f"({method.needs}); use one of: {', '.join(methods_for(task.modality))}")
        method.check_recipe(recipe, task, f"methods[{i}]")
    if recipe.compress is not None:
        check_compress(recipe, task, methods)
    if recipe.search is not None:  # every path and value, before any data or model loads
        check_space(recipe, task)
        for where, value, raw in space_candidates(recipe):
            try:
                check_recipe(Recipe.model_validate(raw))
            except (ValidationError, ValueError, TailorError) as err:
                lines = (format_validation_error(err, None, Recipe) if isinstance(err, ValidationError)
                         else str(err)).splitlines()
                problem = "; ".join(line.removeprefix(": ") for line in lines)
                raise ValueError(f"{where}: value {value!r} is refused: {problem}") from None


def check_compress(recipe: Recipe, task, methods) -> None:
    """Compression works on a whole model: an adapter must merge into it."""
    owner = model_owner(methods)
    if owner is not None and not owner.mergeable:
        raise ValueError(f"compress: {owner.name} keeps its weights apart from the model and cannot be "
                         "merged into it; compress a run of a mergeable method (lora, ia3) or a whole model")
    for i, step in enumerate(build_steps(recipe.compress.steps)):
        step.check_recipe(recipe, task, f"compress.steps[{i}]")


def methods_for(modality: str) -> list[str]:
    return sorted(name for name, cls in METHODS.items() if modality in cls.modalities)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.lr=3e-5` -> (['train', 'lr'], 3e-05). Values are parsed as YAML."""
    if "=" not in text:
        raise TailorError(f"--set {text!r}: expected dotted.path=value, e.g. train.lr=3e-5")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw else None
    # YAML 1.1 reads "3e-5" as a string; accept the float people mean.
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    return key.strip().split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted path; a number indexes a list (`methods.0.lora.r=4`), and a missing
    section is created."""
    for text in overrides:
        path, value = parse_override(text)
        node: Any = raw
        for above, part, below in zip([None, *path[:-1]], path, [*path[1:], None], strict=True):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise TailorError(f"--set {text}: '{part}' is not an index of the list "
                                      f"(0..{len(node) - 1})")
                part = int(part)
            elif not isinstance(node, dict):
                raise TailorError(f"--set {text}: '{above}' is not a section")
            if below is None:
                node[part] = value
                break
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            if isinstance(node[part], str):  # a list entry written by name only: `- quantize`
                node[part] = {node[part]: {}}
            node = node[part]
    return raw


def recipe_from_dict(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    try:
        recipe = Recipe.model_validate(raw)
        check_recipe(recipe)
    except ValidationError as err:
        raise TailorError(format_validation_error(err, source, Recipe)) from None
    except (ValueError, TailorError) as err:
        raise TailorError(f"{source}: {err}") from None
    return recipe


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    raw = apply_overrides(_read_mapping(path, "recipe", "task:, model:, data:, ..."), overrides or [])
    return recipe_from_dict(raw, str(path))


def load_compress_file(path: str | Path, overrides: list[str] | None = None) -> CompressConfig:
    """The file of `tailor compress RUN_DIR FILE`: the recipe's `compress:` section on its own."""
    path = Path(path)
    raw = apply_overrides(_read_mapping(path, "compress", "steps:, output_dir:"), overrides or [])
    try:
        return CompressConfig.model_validate(raw)
    except ValidationError as err:
        raise TailorError(format_validation_error(err, str(path), CompressConfig)) from None


def _read_mapping(path: Path, what: str, example: str) -> dict:
    if not path.is_file():
        raise TailorError(f"{path}: {what} file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise TailorError(f"{path}: not valid YAML: {err}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise TailorError(f"{path}: a {what} is a YAML mapping ({example})")
    return raw


def dump_recipe(recipe: Recipe) -> str:
    # Optional sections a recipe leaves out stay out, so a plain run's recipe.yaml stays as it was.
    exclude = {name for name in ("search", "compress") if getattr(recipe, name) is None}
    return yaml.safe_dump(recipe.model_dump(mode="json", exclude=exclude), sort_keys=False)


def _type_name(annotation: Any) -> str:
    """Readable types for the reference: `adamw | adam | sgd`, `int | null`, `section`."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin is Annotated:
        return _type_name(args[0])
    if origin in (Union, UnionType):
        return " | ".join(dict.fromkeys(_type_name(a) for a in args))
    if args:
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in args)}]"
    if annotation is type(None):
        return "null"
    if annotation is MethodSpec:
        return "method"
    if annotation is StepSpec:
        return "step"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def reference_markdown() -> str:
    """The recipe reference, generated from the schema and the registries (README embeds it;
    a test compares)."""
    sections: list[tuple[str, type[BaseModel]]] = [
        ("recipe", Recipe), ("model", ModelConfig), ("data", DataConfig),
        ("data.split", SplitConfig), ("data.chat", ChatColumns), ("data.image", ImageTransformConfig),
        ("train", TrainConfig),
        ("train.early_stopping", EarlyStopping), ("generation", GenerationConfig),
        ("search", SearchConfig), ("search.pruning", PruningConfig),
        ("search.space.<path> (float)", FloatParam), ("search.space.<path> (int)", IntParam),
        ("search.space.<path> (categorical)", CategoricalParam),
    ]
    plugins = {f"methods[].{name}": cls for name, cls in sorted(METHODS.items())}
    plugins |= {f"compress.steps[].{name}": cls for name, cls in sorted(STEPS.items())}
    sections += [("compress", CompressConfig), *((title, cls.Config) for title, cls in plugins.items())]
    out = []
    for title, model in sections:
        out += [f"#### `{title}`", ""]
        if title in plugins:
            out += [f"{plugins[title].summary}.", ""]
        if not model.model_fields:
            out += ["No options.", ""]
            continue
        out += ["| field | type | default | meaning |", "| --- | --- | --- | --- |"]
        for name, info in model.model_fields.items():
            if info.is_required():
                default = "required"
            else:
                value = info.get_default(call_default_factory=True)
                default = "…" if isinstance(value, BaseModel) else f"`{json_default(value)}`"
            kind = _type_name(info.annotation)
            if model is Recipe and name == "task":  # a registered name, not a fixed list
                kind = " | ".join(TASKS)
            kind = kind.replace("|", "\\|")
            out.append(f"| `{name}` | {kind} | {default} | {info.description or ''} |")
        out.append("")
    return "\n".join(out)


def json_default(value: Any) -> str:
    return json.dumps(to_jsonable_python(value))
