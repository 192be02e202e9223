"""LoRA (Hu et al. 2021), through PEFT.

A frozen weight W gets a trainable low-rank update: W x + (alpha / r) B A x,
with A (r x in) random and B (out x r) zero, so training starts at the base
model. rsLoRA scales by alpha / sqrt(r) instead (Kalajdzievski 2023), which
keeps large ranks stable; DoRA (Liu et al. 2024) learns a magnitude per output
and applies LoRA to the direction. Merging adds B A into W: no extra latency.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tailorkit.methods.base import register
from tailorkit.methods.peft_wrap import PeftMethod, PeftMethodConfig, head_modules, task_type
from tailorkit.models.quantize import NF4Spec, quantize_frozen_linears
from tailorkit.models.vision import lora_targets
from tailorkit.train.fused_lora import use_fused_lora


class LoraConfig(PeftMethodConfig):
    targets: str | list[str] = Field(
        "all-linear", description="Module names (suffix match), a regex (full match) or all-linear.")
    r: int = Field(8, ge=1, description="Rank of the update.")
    alpha: float = Field(16, gt=0, description="Scale numerator: the update is (alpha / r) B A.")
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Dropout on the LoRA input. 0 (PEFT's default too): over 3 data sets x 3 seeds 0 was "
                    "never worse on average than 0.1, and a step is 1.18x (fp32) to 1.43x (bf16) faster "
                    "without the masks (bench/RESULTS.md, LoRA against its bound).")
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases train.")
    rslora: bool = Field(False, description="Scale by alpha / sqrt(r) (rank-stabilised LoRA).")
    dora: bool = Field(False, description="Weight-decomposed LoRA (magnitude + direction).")
    init: Literal["random", "loftq"] = Field(
        "random", description="random: B = 0, training starts at the base. loftq (4-bit base only): "
                              "choose the NF4 base and B A together so Q + B A starts close to W.")
    loftq_iter: int = Field(5, ge=1, le=20, description="loftq: alternating quantise/SVD rounds.")


@register
class Lora(PeftMethod):
    name = "lora"
    Config = LoraConfig
    summary = "LoRA low-rank updates via PEFT; mergeable into the base"
    default_lr = 1e-3  # sources: methods.base.default_lr_of
    mergeable = True
    trains_on_quantized_base = True

    def apply(self, handle) -> None:
        """PEFT's LoRA, with its plain linear layers on the fused training path
        (train/fused_lora.py): the same weights and adapter files, a cheaper step."""
        super().apply(handle)
        use_fused_lora(handle.model)

    def peft_config(self, handle):
        from peft import LoraConfig as PeftLoraConfig

        c = self.config
        targets = c.targets
        if handle.modality == "image" and targets == "all-linear":  # a CNN's weights are convolutions
            targets = lora_targets(handle.model, handle.head_modules)
        return PeftLoraConfig(
            task_type=task_type(handle), target_modules=targets, r=c.r, lora_alpha=c.alpha,
            lora_dropout=c.dropout, bias=c.bias, use_rslora=c.rslora, use_dora=c.dora,
            modules_to_save=head_modules(handle),
        )

    def check_recipe(self, recipe, task, where: str) -> None:
        c = self.config
        if c.init == "loftq" and recipe.model.quantize_base == "none":
            raise ValueError(f"{where}.lora.init: loftq starts LoRA from a 4-bit base's quantisation "
                             "error; set model.quantize_base: nf4 or init: random")
        if c.init == "loftq" and c.dora:
            raise ValueError(f"{where}.lora.init: loftq does not combine with dora; choose one")

    def quantize_base(self, handle, spec: NF4Spec) -> None:
        """QLoRA: every frozen linear becomes NF4; with init loftq, B A starts at the
        quantisation error's rank-r part."""
        c = self.config
        quantize_frozen_linears(handle.model, spec, c.loftq_iter if c.init == "loftq" else 0)
