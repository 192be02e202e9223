"""The recipe: one typed schema for YAML files, `--set` overrides, `--help` and the saved run.

Every field is declared once here. `load_recipe` reads YAML, applies dotted
overrides (`train.lr=3e-5`) and validates; any error names the field and,
for an unknown field, the allowed ones.
"""

from __future__ import annotations

import contextlib
import difflib
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tailorkit.data.image_transforms import ImageTransformConfig
from tailorkit.data.instructions import ChatColumns
from tailorkit.errors import TailorError
from tailorkit.search.config import CategoricalParam, FloatParam, IntParam, PruningConfig, SearchConfig


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Strict):
    name: str = Field(description="Catalogue name (e.g. minilm-l6) or a local Hugging Face folder.")
    max_length: int = Field(128, ge=8, le=8192, description="Tokens per example; longer is cut.")
    trust_remote_code: bool = Field(False, description="Run model code shipped with the folder.")
    pretrained: bool = Field(True, description="image models: false starts the same architecture "
                                                "from random weights (to measure the transfer gain).")
    quantize_base: Literal["none", "nf4"] = Field(
        "none", description="nf4: keep the frozen base's linear weights in 4-bit NF4 with double "
                            "quantisation (QLoRA; needs the lora method).")
    nf4_block_size: Literal[32, 64, 128] = Field(
        64, description="nf4: weights per scale; 32 is more precise and costs 1/32 bit per weight.")


class SplitConfig(Strict):
    validation: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of the train file carved out.")
    test: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of the train file carved out.")
    seed: int = Field(0, description="Seed of the split; fixed so runs are comparable.")
    stratify: bool = Field(True, description="Keep class proportions (classification only).")


class DataConfig(Strict):
    name: str | None = Field(None, description="Catalogue dataset (bbc-news, tweet-sentiment).")
    train: str | None = Field(None, description="Train file: CSV, JSONL, Parquet or a datasets folder.")
    validation: str | None = Field(None, description="Validation file; else split from train.")
    test: str | None = Field(None, description="Test file; else split from train.")
    text_column: str = Field("text", description="Column holding the input text.")
    text_pair_column: str | None = Field(None, description="Second text for pair tasks.")
    label_column: str = Field("label", description="Column holding the label or target.")
    split: SplitConfig = Field(default_factory=SplitConfig,
                               description="How missing validation/test splits are carved (section).")
    format: Literal["auto", "alpaca", "sharegpt", "messages", "prompt_completion", "text"] = Field(
        "auto", description="causal_lm: the instruction layout; auto detects it from the columns.")
    template: str | None = Field(
        None, description="causal_lm: chat template name (chatml, alpaca, plain) or Jinja text; "
                          "default: the tokenizer's own.")
    chat: ChatColumns = Field(default_factory=ChatColumns,
                              description="causal_lm: column names of each format (section).")
    image_column: str = Field("image", description="image_classification tables: the image path column.")
    skip_bad: bool = Field(False, description="image_classification: skip unreadable images (counted) "
                                              "instead of stopping.")
    image: ImageTransformConfig = Field(default_factory=ImageTransformConfig,
                                        description="image_classification: resize, crop, augmentation, "
                                                    "normalisation (section).")
    mlm_probability: float = Field(0.15, gt=0.0, lt=1.0,
                                   description="mlm: fraction of tokens masked (80% [MASK], 10% random, "
                                               "10% kept).")
    max_train_samples: int | None = Field(None, ge=1, description="Seeded subset of train.")
    max_eval_samples: int | None = Field(None, ge=1, description="Seeded subset of validation/test.")

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.name is None) == (self.train is None):
            raise ValueError("give exactly one of data.name (catalogue) or data.train (a file)")
        return self


class EarlyStopping(Strict):
    metric: str = Field("loss", description="Validation metric to watch, e.g. loss, accuracy, f1_macro.")
    patience: int = Field(3, ge=1, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0.0, description="Smallest change that counts as improvement.")


class TrainConfig(Strict):
    epochs: float = Field(3, ge=0, description="Passes over train; fractions allowed; 0 only evaluates.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimiser steps.")
    batch_size: int = Field(16, ge=1, description="Examples per micro-batch.")
    eval_batch_size: int = Field(64, ge=1, description="Examples per batch when evaluating.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimiser step.")
    lr: float = Field(5e-5, gt=0, description="Peak learning rate (after warmup).")
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adamw", description="SGD uses momentum/nesterov.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam/AdamW moment decay rates.")
    momentum: float = Field(0.9, ge=0.0, description="SGD only.")
    nesterov: bool = Field(False, description="SGD only.")
    weight_decay: float = Field(0.01, ge=0.0, description="Decoupled for AdamW; L2 in grad otherwise.")
    l1: float = Field(0.0, ge=0.0, description="L1 penalty on trainable weights, added to the loss.")
    l2: float = Field(0.0, ge=0.0, description="L2 penalty on trainable weights, added to the loss.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping; null disables.")
    schedule: Literal["constant", "linear", "cosine", "step", "polynomial"] = Field(
        "linear", description="LR after warmup; linear and cosine decay to 0.")
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="Fraction of steps warming up.")
    warmup_steps: int | None = Field(None, ge=0, description="Overrides warmup_ratio.")
    step_size: int = Field(100, ge=1, description="step schedule: steps between decays.")
    gamma: float = Field(0.5, gt=0, description="step schedule: decay factor.")
    power: float = Field(1.0, gt=0, description="polynomial schedule: exponent.")
    loss: Literal["auto", "cross_entropy", "mse", "mae"] = Field(
        "auto", description="auto: cross_entropy for classification, mse for regression.")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Cross-entropy label smoothing.")
    class_weights: Literal["none", "balanced"] | list[float] = Field(
        "none", description="Cross-entropy class weights: balanced = inverse class frequency.")
    eval_steps: int | None = Field(None, ge=1, description="Evaluate every N steps; else per epoch.")
    checkpoint_steps: int = Field(50, ge=1, description="Write a resumable checkpoint every N steps.")
    early_stopping: EarlyStopping | None = Field(
        None, description="Stop when a validation metric stops improving; keeps the best weights.")
    bf16: bool = Field(False, description="bf16 autocast for forward and backward.")
    threads: int | None = Field(None, ge=1, description="torch threads; default: free cores.")
    length_grouping: bool = Field(True, description="Batch similar lengths to avoid padding.")
    frozen_prefix: Literal["cache", "eval", "train"] = Field(
        "cache", description="Frozen lower blocks: cache = no dropout, computed once and reused "
                             "where exact; eval = no dropout, recomputed; train = dropout on.")
    cache_memory_mb: int = Field(
        4096, ge=0, description="frozen_prefix cache: beyond this, states go to a memory-mapped "
                                "file in the run directory.")
    progress: bool = Field(True, description="Show a progress bar.")

    @field_validator("class_weights", mode="before")
    @classmethod
    def _class_weights(cls, value: Any) -> Any:
        # One clear message instead of one per member of the union.
        ok = value in ("none", "balanced") if isinstance(value, str) else (
            isinstance(value, list | tuple)
            and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value))
        if not ok:
            raise ValueError(f"must be 'none', 'balanced' or a list of per-class weights, got {value!r}")
        return value


class GenerationConfig(Strict):
    samples: int = Field(4, ge=0, description="Validation prompts answered before and after training.")
    max_new_tokens: int = Field(64, ge=1, description="Tokens per generated answer.")
    temperature: float = Field(0.7, gt=0, description="Sampling temperature (the sampled answer).")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling mass (the sampled answer).")


class Recipe(Strict):
    task: Literal["classification", "regression", "causal_lm", "mlm", "image_classification"] = Field(
        "classification", description="classification (binary or multi-class), regression, "
                                      "causal_lm (instruction tuning / continued pre-training; alias "
                                      "sft), mlm (masked-LM domain adaptation of an encoder) or "
                                      "image_classification.")
    model: ModelConfig = Field(description="The pretrained model (section `model`).")
    data: DataConfig = Field(description="Where the examples come from (section `data`).")
    methods: list[dict[str, dict[str, Any]]] = Field(
        default_factory=lambda: [{"full": {}}],
        description="Adaptation methods applied in order, e.g. [{freeze: {top: 2}}].",
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training setup (section `train`).")
    generation: GenerationConfig = Field(default_factory=GenerationConfig,
                                         description="causal_lm: sample generations (section).")
    seed: int = Field(42, description="Seed of weights init, data order and dropout.")
    output_dir: str = Field("runs/run", description="Run directory; refused if it holds a run.")
    search: SearchConfig | None = Field(None, description="Hyperparameter search for `tailor tune` "
                                                          "(section); `tailor train` ignores it.")

    @field_validator("task", mode="before")
    @classmethod
    def _task_alias(cls, value: Any) -> Any:
        return "causal_lm" if value == "sft" else value

    @field_validator("methods", mode="before")
    @classmethod
    def _normalise_methods(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError("methods must be a list, e.g. [full] or [{freeze: {top: 2}}]")
        out = []
        for item in value:
            if isinstance(item, str):
                item = {item: {}}
            if not isinstance(item, dict) or len(item) != 1:
                raise ValueError(f"each method is a name or {{name: {{...}}}}, got {item!r}")
            ((name, cfg),) = item.items()
            out.append({name: cfg or {}})
        return out

    @model_validator(mode="after")
    def _check_task_options(self) -> Recipe:
        from tailorkit.evaluate.metrics import TASK_METRICS

        losses = {"classification": ("auto", "cross_entropy"), "regression": ("auto", "mse", "mae"),
                  "causal_lm": ("auto",), "mlm": ("auto",),
                  "image_classification": ("auto", "cross_entropy")}
        if self.train.loss not in losses[self.task]:
            raise ValueError(f"train.loss: '{self.train.loss}' does not fit task {self.task} "
                             f"(allowed: {', '.join(losses[self.task])})")
        if self.model.quantize_base != "none" and self.task == "mlm":
            raise ValueError("model.quantize_base: task mlm trains the encoder itself; use none")
        if self.model.quantize_base != "none" and not any("lora" in m for m in self.methods):
            raise ValueError("model.quantize_base: a 4-bit base cannot train; add the lora method "
                             "(QLoRA) or set quantize_base: none")
        es = self.train.early_stopping
        if es is not None and es.metric not in TASK_METRICS[self.task]:
            raise ValueError(f"train.early_stopping.metric: '{es.metric}' is not a {self.task} "
                             f"metric (allowed: {', '.join(TASK_METRICS[self.task])})")
        return self

    @model_validator(mode="after")
    def _check_methods(self) -> Recipe:
        from tailorkit.methods import build_method

        modality = "image" if self.task == "image_classification" else "text"
        for i, item in enumerate(self.methods):
            ((name, cfg),) = item.items()
            method = build_method(name, cfg, where=f"methods[{i}]")
            if modality not in method.modalities:
                raise ValueError(f"methods[{i}]: {name} does not apply to {self.task} models "
                                 f"({method.needs}); use one of: {', '.join(methods_for(modality))}")
            method.check_recipe(self, f"methods[{i}]")
        return self

    @model_validator(mode="after")
    def _check_search(self) -> Recipe:
        if self.search is not None:  # every path and value, before any data or model loads
            from tailorkit.search.space import check_space

            check_space(self)
        return self


def methods_for(modality: str) -> list[str]:
    from tailorkit.methods import METHODS

    return sorted(name for name, cls in METHODS.items() if modality in cls.modalities)


def _allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Walk `loc` through nested models to list the fields allowed at its parent."""
    current: Any = model
    for part in loc[:-1]:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return []
        annotation = field.annotation
        candidates = getattr(annotation, "__args__", (annotation,))
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            return []
        current = nested[0]
    return list(current.model_fields)


def format_validation_error(
    err: ValidationError, source: str | None, model: type[BaseModel], prefix: str = ""
) -> str:
    """One line per problem: `source: field.path: what is wrong (allowed: ...)`."""
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        path = ".".join([prefix] * bool(prefix) + [str(p) if isinstance(p, str) else f"[{p}]" for p in loc])
        path = path.replace(".[", "[")
        if e["type"] == "extra_forbidden":
            allowed = _allowed_fields(model, loc)
            hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            msg = "unknown field"
            if hint:
                msg += f"; did you mean '{hint[0]}'?"
            msg += f" (allowed: {', '.join(allowed)})"
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "literal_error":
                msg = msg.replace("Input should be", "must be one of:")
        where = ": ".join(part for part in (source, path) if part)
        lines.append(f"{where}: {msg}")
    return "\n".join(lines)


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
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise TailorError(f"--set {text}: '{part}' is not a section")
            node = child
        node[path[-1]] = value
    return raw


def recipe_from_dict(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        raise TailorError(format_validation_error(err, source, Recipe)) from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise TailorError(f"{path}: recipe file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise TailorError(f"{path}: not valid YAML: {err}".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise TailorError(f"{path}: a recipe is a YAML mapping (task:, model:, data:, ...)")
    raw = apply_overrides(raw, overrides or [])
    return recipe_from_dict(raw, str(path))


def dump_recipe(recipe: Recipe) -> str:
    exclude = {"search"} if recipe.search is None else None  # a plain run's recipe.yaml stays as it was
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
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def reference_markdown() -> str:
    """The recipe reference, generated from the schema (README embeds it; a test compares)."""
    sections: list[tuple[str, type[BaseModel]]] = [
        ("recipe", Recipe), ("model", ModelConfig), ("data", DataConfig),
        ("data.split", SplitConfig), ("data.chat", ChatColumns), ("data.image", ImageTransformConfig),
        ("train", TrainConfig),
        ("train.early_stopping", EarlyStopping), ("generation", GenerationConfig),
        ("search", SearchConfig), ("search.pruning", PruningConfig),
        ("search.space.<path> (float)", FloatParam), ("search.space.<path> (int)", IntParam),
        ("search.space.<path> (categorical)", CategoricalParam),
    ]
    out = []
    for title, model in sections:
        out += [f"#### `{title}`", "", "| field | type | default | meaning |", "| --- | --- | --- | --- |"]
        for name, info in model.model_fields.items():
            if info.is_required():
                default = "required"
            else:
                value = info.get_default(call_default_factory=True)
                default = "…" if isinstance(value, BaseModel) else f"`{json_default(value)}`"
            kind = _type_name(info.annotation).replace("|", "\\|")
            out.append(f"| `{name}` | {kind} | {default} | {info.description or ''} |")
        out.append("")
    return "\n".join(out)


def json_default(value: Any) -> str:
    import json

    return json.dumps(value)
