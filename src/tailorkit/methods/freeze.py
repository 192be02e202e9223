"""Partial fine-tuning: choose which parts of the model train; the rest is frozen.

The options are a union of parts: the head, the top N blocks, all biases
(BitFit, Ben Zaken et al. 2022), all normalisation layers, the embeddings, and
parameters whose names match `include`; `exclude` then removes matches. So
`{top: 0}` is head-only, `{top: 0, bias: true}` is BitFit, `{top: 2}` trains
the last two blocks and the head.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from tailorkit.errors import TailorError
from tailorkit.methods.base import Method, MethodConfig, register


class FreezeConfig(MethodConfig):
    top: int = Field(0, ge=0, description="Train the top N blocks (0 = none).")
    head: bool = Field(True, description="Train the task head (classifier, pooler, final norm).")
    bias: bool = Field(False, description="Train every bias term (BitFit).")
    norm: bool = Field(False, description="Train every normalisation layer.")
    embeddings: bool = Field(False, description="Train the input embeddings.")
    include: list[str] = Field(default_factory=list, description="Regexes of parameters to train.")
    exclude: list[str] = Field(default_factory=list, description="Regexes of parameters to freeze.")

    @field_validator("include", "exclude")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            try:
                re.compile(p)
            except re.error as err:
                raise ValueError(f"bad regex {p!r}: {err}") from None
        return patterns


def norm_parameter_names(handle) -> set[str]:
    names = set()
    for module_name, module in handle.model.named_modules():
        if "norm" in type(module).__name__.lower():
            for pname, _ in module.named_parameters(recurse=False):
                names.add(f"{module_name}.{pname}" if module_name else pname)
    return names


@register
class Freeze(Method):
    name = "freeze"
    Config = FreezeConfig
    summary = "partial fine-tuning: head, top-N blocks, BitFit, norms, embeddings, regex"
    keeps_frozen_prefix = True

    def apply(self, handle) -> None:
        c = self.config
        if c.top > handle.num_blocks:

            raise TailorError(f"freeze.top={c.top}, but the model has {handle.num_blocks} blocks")
        norms = norm_parameter_names(handle) if c.norm else set()
        first_trained_depth = handle.num_blocks - c.top + 1
        include = [re.compile(p) for p in c.include]
        exclude = [re.compile(p) for p in c.exclude]

        def trains(name: str) -> bool:
            depth = handle.depth(name)
            chosen = (
                (c.head and depth == handle.num_blocks + 1)
                or (1 <= depth <= handle.num_blocks and depth >= first_trained_depth)
                or (c.bias and name.endswith("bias"))
                or name in norms
                or (c.embeddings and depth == 0)
                or any(r.search(name) for r in include)
            )
            return chosen and not any(r.search(name) for r in exclude)

        handle.set_trainable(trains)
