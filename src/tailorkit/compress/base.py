"""The compression step protocol and its registry.

A step takes the finished model (a ModelHandle with no adapter left: adapters are merged
first) and makes it smaller or faster in place, returning what it did for the summary. A step
whose model no longer fits a plain Hugging Face folder (an int8 model) writes and reads the
run's model/ folder itself. Adding a step is one module in this folder with one `@register`.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from tailorkit.config.compress import COMPRESS_CONFIGS, StepConfig
from tailorkit.errors import TailorError
from tailorkit.models.handle import ModelHandle


class Step:
    name: ClassVar[str]
    Config: ClassVar[type[StepConfig]] = StepConfig
    summary: ClassVar[str] = ""
    saves_model: ClassVar[bool] = False  # writes model/ itself (save_model / load_model)

    def __init__(self, config: StepConfig) -> None:
        self.config = config

    def check_recipe(self, recipe, task, where: str) -> None:
        """Refuse what the step cannot do (a model kind, an order of steps) with a ValueError
        naming the field; runs when the recipe or compress file is read."""

    def apply(self, handle: ModelHandle, calibration=None) -> dict:
        """Compress `handle.model` in place; returns facts for summary.json. `calibration` is the
        training split, for steps that measure activations (static int8); the others ignore it."""
        raise NotImplementedError

    def save_model(self, handle: ModelHandle, directory: Path) -> None:
        raise NotImplementedError

    def load_model(self, task, recipe, directory: Path, labels: list[str]) -> ModelHandle:
        """What save_model wrote, ready for inference."""
        raise NotImplementedError


STEPS: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    if cls.name in STEPS:
        raise ValueError(f"compression step '{cls.name}' registered twice")
    STEPS[cls.name] = cls
    COMPRESS_CONFIGS[cls.name] = cls.Config
    return cls


def build_steps(specs) -> list[Step]:
    return [STEPS[spec.name](spec.config) for spec in specs]


def order_problems(steps: list[Step], where: str) -> list[str]:
    """A step that stores the model in its own format (int8) leaves no float weights for a step
    after it to work on, so it comes last; checked before any step runs."""
    stored = next((i for i, step in enumerate(steps) if step.saves_model), None)
    if stored is None or stored == len(steps) - 1:
        return []
    first, after = steps[stored].name, steps[stored + 1].name
    return [f"{where}[{stored + 1}]: {after} cannot follow {first}, which stores the model in its own "
            f"(int8) format; put {first} last"]


def model_writer(steps: list[Step]) -> Step | None:
    """The last step that writes model/ itself; None: a plain Hugging Face folder."""
    owners = [s for s in steps if s.saves_model]
    if len(owners) > 1:
        raise TailorError(f"compress.steps: {owners[0].name} and {owners[1].name} both store the model "
                          "in their own format; keep one")
    return owners[-1] if owners else None
