"""The whole recipe: one typed model for YAML files, `--set`, `--help`, search spaces and the saved run.

Only the shape is checked here. What needs the code of a task or a method (does this method
fit this task? is this a metric of the task?) is checked by `tailorkit.recipe.check_recipe`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from tailorkit.config.base import Strict
from tailorkit.config.compress import CompressConfig
from tailorkit.config.data import DataConfig
from tailorkit.config.generation import GenerationConfig
from tailorkit.config.methods import MethodSpec, parse_methods
from tailorkit.config.model import ModelConfig
from tailorkit.config.search import SearchConfig
from tailorkit.config.tasks import TASK_NAMES
from tailorkit.config.train import TrainConfig


class Recipe(Strict):
    task: str = Field(
        "classification", description="What the model learns; one of the registered tasks "
                                      "(the type column lists them; sft is causal_lm).")
    model: ModelConfig = Field(description="The pretrained model (section `model`).")
    data: DataConfig = Field(description="Where the examples come from (section `data`).")
    methods: list[MethodSpec] = Field(
        default_factory=lambda: parse_methods(["full"]),
        description="Adaptation methods applied in order, e.g. [{freeze: {top: 2}}]; each "
                    "method's options are listed under `methods[].<name>`.",
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training setup (section `train`).")
    generation: GenerationConfig = Field(default_factory=GenerationConfig,
                                         description="causal_lm: sample generations (section).")
    seed: int = Field(42, description="Seed of weights init, data order and dropout.")
    output_dir: str = Field("runs/run", description="Run directory; refused if it holds a run.")
    search: SearchConfig | None = Field(None, description="Hyperparameter search for `tailor tune` "
                                                          "(section); `tailor train` ignores it.")
    compress: CompressConfig | None = Field(None, description="Compression after training (section); "
                                                              "each step writes a run directory.")

    @field_validator("task", mode="before")
    @classmethod
    def _registered_task(cls, value: Any) -> Any:
        if not isinstance(value, str) or value not in TASK_NAMES:  # a list is unhashable
            names = sorted(set(TASK_NAMES.values()))
            raise ValueError(f"must be one of: {', '.join(map(repr, names))} (got {value!r})")
        return TASK_NAMES[value]

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, value: Any) -> list[MethodSpec]:
        return parse_methods(value)
