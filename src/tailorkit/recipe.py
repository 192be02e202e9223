"""Recipe files: YAML loading, dotted `--set` overrides, the checks that need tasks and methods,
and the reference generated from the schema.

The schema itself is `tailorkit.config` (every field declared once). `load_recipe` reads YAML,
applies overrides (`train.lr=3e-5`) and validates; any error names the field and, for an unknown
field, the allowed ones. Importing this module registers every task and method, so the schema's
`task:` and `methods:` know them.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
from collections.abc import Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from tailorkit.compress import STEPS, build_steps, order_problems
from tailorkit.config import (
    CategoricalParam,
    CompressConfig,
    DataConfig,
    FloatParam,
    GenerationConfig,
    IntParam,
    MethodSpec,
    ModelConfig,
    Recipe,
    StepSpec,
    TrainConfig,
    format_validation_error,
)
from tailorkit.config.plugins import EVERY_OPTION
from tailorkit.config.space import check_space, space_candidates
from tailorkit.errors import TailorError, undecodable
from tailorkit.methods import METHODS, build_methods, default_lr_of, model_owner
from tailorkit.tasks import TASKS, task_of

__all__ = ["DataConfig", "GenerationConfig", "ModelConfig", "Recipe", "TrainConfig", "check_recipe",
           "dump_recipe", "format_validation_error", "load_recipe", "recipe_from_dict", "recipe_problems",
           "reference_markdown", "resolve_defaults"]


def check_recipe(recipe: Recipe) -> None:
    """Raise ValueError listing every problem `recipe_problems` finds, one per line."""
    problems = recipe_problems(recipe)
    if problems:
        raise ValueError("\n".join(problems))


def recipe_problems(recipe: Recipe) -> list[str]:
    """What the schema alone cannot see, every problem in one pass, one line each naming the
    field: options that do not fit the task or each other, then the methods (do they fit the
    task and each other?), then a search space's every path and value."""
    task = task_of(recipe)
    problems = _problems(task.check_recipe, recipe)
    try:
        methods = build_methods(recipe.methods)
    except TailorError as err:  # two adapter methods: nothing more to check them against
        return problems + str(err).splitlines()
    if recipe.model.quantize_base != "none" and not any(m.trains_on_quantized_base for m in methods):
        able = sorted(name for name, cls in METHODS.items() if cls.trains_on_quantized_base)
        problems.append(f"model.quantize_base: a 4-bit base cannot train; add a method that trains on "
                        f"it ({', '.join(able)}: QLoRA) or set quantize_base: none")
    if recipe.compress is not None:
        problems += compress_problems(recipe, task, methods)
    for i, method in enumerate(methods):
        if task.modality not in method.modalities:
            problems.append(f"methods[{i}]: {method.name} does not apply to {task.name} models "
                            f"({method.needs}); use one of: {', '.join(methods_for(task.modality))}")
        else:
            problems += _problems(method.check_recipe, recipe, task, f"methods[{i}]")
    if recipe.search is not None:  # every path and value, before any data or model loads
        problems += search_problems(recipe, task, check_values=not problems)
    return problems


def _problems(check, *args) -> list[str]:
    """The lines of the ValueError (or TailorError) that `check(*args)` raises; [] if none."""
    try:
        check(*args)
    except (ValueError, TailorError) as err:
        return str(err).splitlines()
    return []


def compress_problems(recipe: Recipe, task, methods) -> list[str]:
    """Compression works on a whole model (an adapter must merge into it), and each step's
    options and place in the chain must fit."""
    owner = model_owner(methods)
    refusal = owner.compress_refusal() if owner is not None else ""
    problems = [f"compress: {refusal}"] if refusal else []
    steps = build_steps(recipe.compress.steps)
    for i, step in enumerate(steps):
        problems += _problems(step.check_recipe, recipe, task, f"compress.steps[{i}]")
    return problems + order_problems(steps, "compress.steps")


def search_problems(recipe: Recipe, task, check_values: bool) -> list[str]:
    """The space's paths; then, when they and the rest of the recipe are sound
    (`check_values`), each bound and choice as a real recipe."""
    problems = _problems(check_space, recipe, task)
    if problems or not check_values:
        return problems
    for where, value, raw in space_candidates(recipe):
        try:
            refused = recipe_problems(Recipe.model_validate(raw))
        except ValidationError as err:
            refused = format_validation_error(err, None, Recipe).splitlines()
        if refused:
            problem = "; ".join(line.removeprefix(": ") for line in refused)
            problems.append(f"{where}: value {value!r} is refused: {problem}")
    return problems


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
    section is created. Under `search.space` the rest of the path is one key, the recipe field
    a dimension searches (`search.space.train.lr=[1e-4, 1e-3]`)."""
    for text in overrides:
        path, value = parse_override(text)
        if path[:2] == ["search", "space"] and len(path) > 3:
            path = [*path[:2], ".".join(path[2:])]
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


MAX_ROUNDS = 4  # schema passes: a refused field left at its default can reveal another
# The checks that combine fields are about these: with either refused, they would check the
# default in its place.
CHECKED_AGAINST = ("task", "methods")


def recipe_from_dict(raw: dict[str, Any], source: str = "recipe", overrides: Sequence[str] = ()) -> Recipe:
    """A checked recipe with its defaults resolved (`resolve_defaults`), or a TailorError listing
    every problem found, one per line, each naming the field and where it was written (`source`,
    or the `--set` among `overrides` that set it): the schema's errors, then the checks that
    combine fields, then the methods'."""
    problems, recipe, rest = [], None, raw
    for _ in range(MAX_ROUNDS):
        try:
            recipe = Recipe.model_validate(rest)
            break
        except ValidationError as err:
            if problems and any(e["type"] == "missing" for e in err.errors()):
                break  # a section dropped below has no default: nothing more to learn
            problems += format_validation_error(err, None, Recipe).splitlines()
            rest = _without_refused(rest, err)
            if rest is None:
                break
    if recipe is None:
        problems.append(": the checks that combine fields (task, methods, search) run once the "
                        "problems above are fixed")
    else:
        problems += recipe_problems(recipe)
    if problems:
        raise TailorError("\n".join(_located(line, source, overrides) for line in problems))
    return resolve_defaults(recipe)


def resolve_defaults(recipe: Recipe) -> Recipe:
    """The recipe with what it left to its methods and task filled in, so the run's recipe.yaml
    shows the value used: `train.lr` left out (or null) becomes the methods' default (the largest
    `default_lr` among them; 5e-5 when none has one; `tailorkit.methods.default_lr_of`), and
    `train.length_grouping` the task's."""
    update: dict[str, Any] = {}
    if recipe.train.lr is None:
        update["lr"] = default_lr_of(recipe.methods)
    if recipe.train.length_grouping is None:
        update["length_grouping"] = task_of(recipe).length_grouping
    if not update:
        return recipe
    return recipe.model_copy(update={"train": recipe.train.model_copy(update=update)})


def _without_refused(raw: dict[str, Any], err: ValidationError) -> dict[str, Any] | None:
    """`raw` without the fields the schema refused, so each takes its default and the other
    checks can still run; None where that would change what they check against."""
    raw = copy.deepcopy(raw)
    for e in err.errors():
        holder, key, node, above, container = None, None, raw, None, None
        for part in e["loc"]:  # the deepest mapping key on the error's path
            if isinstance(node, dict) and part in node:
                holder, key, container = node, part, above
            elif not (isinstance(node, list) and isinstance(part, int) and part < len(node)):
                break
            above, node = node, node[part]
        if holder is None or (holder is raw and key in CHECKED_AGAINST):
            return None
        holder.pop(key, None)
        if not holder and isinstance(container, list):  # a list entry `{prompt: {...}}`, emptied
            container[:] = [entry for entry in container if entry is not holder]
    return raw


def _located(line: str, source: str, overrides: Sequence[str]) -> str:
    """`field: problem` -> `where: field: problem`; where is the last `--set` that wrote the
    field (or a section above it), else the file."""
    field = line.partition(": ")[0]
    for text in reversed(overrides):
        parts, _ = parse_override(text)
        key = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts).lstrip(".")
        if field == key or field.startswith((f"{key}.", f"{key}[")):
            source = f"--set {text}"
            break
    return f"{source}: {line.removeprefix(': ')}"


def locate_field_error(message: str, recipe: Recipe, source: str, overrides: Sequence[str]) -> str:
    """A problem found while the recipe ran (`model.name: ... not found`), located as a schema
    error is: in `source` (the recipe file) or the `--set` that wrote the field. Messages that do
    not start with one of the recipe's fields (`data.csv: row 3: ...`) are returned as they are."""
    head = re.match(r"([a-z_]+)(?:\.([a-z_]+)[.\[: ]|[\[:])", message)
    if head is None or head.group(1) not in Recipe.model_fields:
        return message
    section, field = getattr(recipe, head.group(1)), head.group(2)
    if field is not None and not (isinstance(section, BaseModel) and field in type(section).model_fields):
        return message
    return _located(message, source, overrides)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    overrides = overrides or []
    raw = apply_overrides(_read_mapping(path, "recipe", "task:, model:, data:, ..."), overrides)
    return recipe_from_dict(raw, str(path), overrides)


def load_compress_file(path: str | Path, overrides: list[str] | None = None) -> CompressConfig:
    """The file of `tailor compress RUN_DIR FILE`: the recipe's `compress:` section on its own."""
    path = Path(path)
    overrides = overrides or []
    raw = apply_overrides(_read_mapping(path, "compress", "steps:, output_dir:"), overrides)
    try:
        return CompressConfig.model_validate(raw)
    except ValidationError as err:
        lines = format_validation_error(err, None, CompressConfig).splitlines()
        raise TailorError("\n".join(_located(line, str(path), overrides) for line in lines)) from None


def _read_mapping(path: Path, what: str, example: str) -> dict:
    if not path.is_file():
        raise TailorError(f"{path}: {what} file not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise TailorError(f"{path}: {undecodable(err)}; save the {what} file as UTF-8") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise TailorError(f"{path}: not valid YAML: {err}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise TailorError(f"{path}: a {what} is a YAML mapping ({example})")
    return raw


def dump_recipe(recipe: Recipe, full: bool = True) -> str:
    """The resolved recipe as YAML, every method's and compression step's options included, so
    a run keeps what it trained with when a default changes; `full=False` leaves out the fields
    of other tasks (a text classifier's recipe without data.image, data.chat or generation)."""
    # Optional sections a recipe leaves out stay out, so a plain run's recipe.yaml stays as it was.
    exclude: dict[str, Any] = {name: True for name in ("search", "compress") if getattr(recipe, name) is None}
    if not full:
        for path in task_of(recipe).unread_fields():
            *sections, name = path.split(".")
            node = exclude
            for section in sections:
                node = node.setdefault(section, {})
            node[name] = True
    dumped = recipe.model_dump(mode="json", exclude=exclude, context={EVERY_OPTION: True})
    return yaml.safe_dump(dumped, sort_keys=False)


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
    sections = _sections("", Recipe)
    at = [title for title, _ in sections].index("search.pruning") + 1
    sections[at:at] = [("search.space.<path> (float)", FloatParam), ("search.space.<path> (int)", IntParam),
                       ("search.space.<path> (categorical)", CategoricalParam)]
    plugins = {f"methods[].{name}": cls for name, cls in sorted(METHODS.items())}
    plugins |= {f"compress.steps[].{name}": cls for name, cls in sorted(STEPS.items())}
    sections += [(title, cls.Config) for title, cls in plugins.items()]
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


def _sections(path: str, model: type[BaseModel]) -> list[tuple[str, type[BaseModel]]]:
    """`model` and every section nested in it, depth first, as (dotted path, config class)."""
    out = [(path or "recipe", model)]
    for name, info in model.model_fields.items():
        for nested in _config_classes(info.annotation):
            out += _sections(f"{path}.{name}" if path else name, nested)
    return out


def _config_classes(annotation) -> list[type[BaseModel]]:
    if get_origin(annotation) in (Union, UnionType):
        return [c for arg in get_args(annotation) for c in _config_classes(arg)]
    return [annotation] if isinstance(annotation, type) and issubclass(annotation, BaseModel) else []


def json_default(value: Any) -> str:
    return json.dumps(to_jsonable_python(value))
