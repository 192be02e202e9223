"""The Method protocol and its registry.

A method is a small object built from a typed config. `apply` adapts a
ModelHandle in place (usually by choosing what trains, later by adding
modules). Methods compose in recipe order. Adding a method is one
`@register` on a class; the recipe, `tailor methods` and the contract tests
all read this registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from tailorkit.errors import TailorError
from tailorkit.models.handle import ModelHandle
from tailorkit.models.quantize import quantize_frozen_linears


class MethodConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Method:
    """Base class: every hook has a harmless default, so a method only writes what it changes."""

    name: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    summary: ClassVar[str] = ""
    # An adapter method keeps its trained weights apart from the base model: the run
    # saves an adapter folder (save_adapter) instead of a whole model.
    adapter: ClassVar[bool] = False
    # The model kinds it works on; recipe validation refuses the others before any loading.
    modalities: ClassVar[frozenset[str]] = frozenset({"text", "image"})
    needs: ClassVar[str] = ""  # why it is limited, for that message
    # Builds its own setup (a frozen backbone's cached features under a new head) instead of
    # adapting the model in place; `tasks.setup` branches on it.
    feature_extraction: ClassVar[bool] = False
    # Leaves the frozen lower blocks computing what the base computes, so their outputs can be
    # cached (train/frozen_prefix.py); adapters inside them, or extra inputs, change it.
    keeps_frozen_prefix: ClassVar[bool] = False

    def __init__(self, config: MethodConfig) -> None:
        self.config = config

    def apply(self, handle: ModelHandle) -> None:
        raise NotImplementedError

    def check_recipe(self, recipe, where: str) -> None:
        """Refuse a recipe this method cannot serve (task, other methods) with a ValueError
        naming the field; runs at recipe validation, before anything loads."""

    def lr_scales(self, handle: ModelHandle) -> dict[str, float]:
        """Per-parameter learning-rate multipliers (name -> factor); empty means 1 for all."""
        return {}

    def on_epoch_start(self, handle: ModelHandle, epoch: int) -> None:
        """Called before every epoch (also when resuming mid-epoch)."""

    def save_adapter(self, handle: ModelHandle, directory: Path) -> None:
        """Adapter methods: write adapter_config.json + adapter_model.safetensors."""
        raise NotImplementedError

    def load_adapter(self, handle: ModelHandle, directory: Path) -> None:
        """Adapter methods: load what save_adapter wrote into a handle `apply` prepared."""
        raise NotImplementedError

    def merge(self, handle: ModelHandle) -> None:
        """Fold the trained weights into the base so the result is a plain model."""
        raise TailorError(f"method '{self.name}' has nothing to merge: its weights are the model's")


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if cls.name in METHODS:
        raise ValueError(f"method '{cls.name}' registered twice")
    METHODS[cls.name] = cls
    return cls


def build_method(name: str, config: dict | None, where: str = "method") -> Method:
    """Validate `config` for method `name`; errors name the field and the allowed values."""
    cls = METHODS.get(name)
    if cls is None:
        raise ValueError(f"{where}: unknown method '{name}' (registered: {', '.join(sorted(METHODS))})")
    try:
        return cls(cls.Config.model_validate(config or {}))
    except ValidationError as err:
        from tailorkit.recipe import format_validation_error

        raise ValueError(format_validation_error(err, None, cls.Config, prefix=f"{where}.{name}")) from None


def chosen_before(handle: ModelHandle) -> list:
    """Base parameters an earlier method chose to train; none if nothing was frozen yet.

    Adapter methods freeze the base but keep these, so `freeze: {bias: true}` followed by
    `lora` trains LoRA plus every bias.
    """
    # Quantised weights (QLoRA's 4-bit base) can never train, so they do not count as frozen.
    params = [p for _, p in handle.named_parameters() if p.dtype.is_floating_point]
    if all(p.requires_grad for p in params):
        return []
    return [p for p in params if p.requires_grad]


def adapter_method(methods: list[Method]) -> Method | None:
    found = [m for m in methods if m.adapter]
    if len(found) > 1:
        raise TailorError("methods: one adapter method per recipe (got "
                          f"{', '.join(m.name for m in found)}); train them as separate runs")
    return found[0] if found else None


def apply_methods(handle: ModelHandle, specs: list[dict[str, dict]]) -> list[Method]:
    methods = []
    for i, spec in enumerate(specs):
        ((name, cfg),) = spec.items()
        try:
            method = build_method(name, cfg, where=f"methods[{i}]")
        except ValueError as err:
            raise TailorError(str(err)) from None
        methods.append(method)
        adapter_method(methods)  # fail before the second adapter touches the model
        method.apply(handle)
    if not handle.trainable_names():
        raise TailorError("methods: after applying them nothing is trainable; check the freeze options")
    if handle.nf4 is not None:  # QLoRA: now that the methods chose what trains, the rest goes 4-bit
        quantize_frozen_linears(handle.model, handle.nf4, handle.extra.get("loftq_iter", 0))
    return methods
