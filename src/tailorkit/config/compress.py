"""`compress:` — steps that make a trained model smaller or faster, in order (prune, then quantise).

The options of each step are declared beside its code (`tailorkit/compress/<name>.py`) as a
subclass of `StepConfig`; `compress.base.register` puts that class in `COMPRESS_CONFIGS`. The
same section is the file `tailor compress RUN_DIR compress.yaml` reads.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from tailorkit.config.base import Strict
from tailorkit.config.plugins import PluginConfig, PluginSpec


class StepConfig(PluginConfig):
    pass


COMPRESS_CONFIGS: dict[str, type[StepConfig]] = {}  # name -> options; filled by compress.base.register


class StepSpec(PluginSpec):
    table = COMPRESS_CONFIGS
    kind = "compression step"


class CompressConfig(Strict):
    steps: list[StepSpec] = Field(min_length=1, description="Compression steps in order, e.g. "
                                                            "[{prune: {amount: 0.5}}, quantize]; "
                                                            "options under `compress.steps[].<name>`.")
    output_dir: str | None = Field(None, description="Where the compressed runs go, one run directory "
                                                     "per step (1-prune/, 2-quantize/...); default: "
                                                     "the run's output_dir + '-compressed'.")
    latency_batches: list[int] = Field([1, 32], min_length=1, description="Batch sizes whose latency "
                                                                          "is measured before and after.")
    latency_examples: int = Field(64, ge=1, description="Test examples timed at each batch size.")
    threads: int | None = Field(None, ge=1, description="torch threads while compressing and timing; "
                                                        "default: the run's train.threads, else the "
                                                        "free cores.")

    @field_validator("steps", mode="before")
    @classmethod
    def _steps(cls, value: Any) -> list[StepSpec]:
        return StepSpec.parse_list(value, "[{prune: {amount: 0.5}}, quantize]")
