"""A study file (`tailor study study.yaml`): one base recipe, named variants of it, and seeds.

Each variant is a list of `--set` overrides (`methods=[lora]`, `train.lr=1e-3`) applied to the
base recipe, so a study says in one place how its strategies differ and nothing else."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from tailorkit.config.base import Strict

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # a variant's name is a folder name


class VariantConfig(Strict):
    name: str = Field(description="The variant's name: a folder name (letters, digits, _ . + -).")
    set: list[str] = Field(default_factory=list,
                           description="Overrides of the base recipe, like `--set`: 'train.lr=1e-3'.")

    @field_validator("name")
    @classmethod
    def _folder_name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError(f"must be a folder name of letters, digits, _ . + - (got {value!r})")
        return value

    @field_validator("set")
    @classmethod
    def _overrides(cls, value: list[str]) -> list[str]:
        for text in value:
            if "=" not in text:
                raise ValueError(f"{text!r}: expected dotted.path=value, e.g. train.lr=3e-5")
        return value


class StudyConfig(Strict):
    base: str | dict = Field(description="The base recipe: a file (relative to the study file) "
                                         "or the recipe itself as a mapping.")
    variants: list[VariantConfig] = Field(min_length=1, description="The strategies compared.")
    seeds: list[int] | None = Field(None, min_length=1, description="Run each variant once per seed "
                                                                    "(default: the base recipe's seed).")
    metric: str | None = Field(None, description="The test metric the table and plots compare "
                                                 "(default: the task's first, accuracy, mse or loss).")
    isolate: bool = Field(True, description="Train each run in a process of its own, so its peak "
                                            "memory is its own and a crash fails only it.")
    output_dir: str = Field("runs/study", description="The study directory: one run per variant and "
                                                      "seed under runs/, the tables and the report.")

    @model_validator(mode="after")
    def _unique(self) -> StudyConfig:
        names = [v.name for v in self.variants]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"variants: each name once (repeated: {', '.join(twice)})")
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: each seed once")
        return self
