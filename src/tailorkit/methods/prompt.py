"""Prefix tuning and prompt tuning, through PEFT: trained virtual tokens.

Prompt tuning (Lester et al. 2021) prepends trained embeddings to the input;
initialised from the embeddings of a text, it starts from a meaningful
prompt. It is known to be weak on small models. Prefix tuning (Li & Liang
2021) prepends trained keys and values in every attention layer, optionally
produced by a small MLP (the reparameterisation the paper uses for stability).
Neither can be merged: the virtual tokens are extra inputs, not weight deltas.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from torch import nn

from tailorkit.errors import TailorError
from tailorkit.methods.base import register
from tailorkit.methods.peft_wrap import PeftMethod, PeftMethodConfig, head_modules, task_type


class _VirtualTokens(PeftMethod):
    modalities = frozenset({"text"})
    needs = "it adds virtual tokens to a transformer's input"

    def adapt(self, setup, task, recipe):
        """The virtual tokens take positions before the text's: with learned absolute positions
        (BERT's 512) the two together must fit, or the model fails inside its embeddings."""
        limit = absolute_positions(setup.handle.model)
        used = self.config.virtual_tokens + recipe.model.max_length
        if limit is not None and not self.config.init_from and used > limit:
            raise TailorError(f"{self.name}.virtual_tokens: {self.config.virtual_tokens} virtual tokens + "
                              f"model.max_length {recipe.model.max_length} = {used} positions, but the model "
                              f"has {limit}; lower one of them")
        return super().adapt(setup, task, recipe)

    def merge(self, handle) -> None:
        raise TailorError(f"{self.name} cannot be merged: its virtual tokens are extra inputs, not "
                          "weight changes; use the run's adapter folder with the base model")


def absolute_positions(model: nn.Module) -> int | None:
    """How many positions a model's learned position embeddings cover (RoBERTa's start after its
    padding index); None for a model without them (rotary positions, as in Llama)."""
    table = next((m for name, m in model.named_modules()
                  if name.endswith("position_embeddings") and isinstance(m, nn.Embedding)), None)
    if table is None:
        return None
    return table.num_embeddings - (table.padding_idx + 1 if table.padding_idx is not None else 0)


class PrefixConfig(PeftMethodConfig):
    virtual_tokens: int = Field(20, ge=1, description="Prefix length per attention layer.")
    projection: bool = Field(False, description="Produce the prefix with an MLP (reparameterised).")
    projection_size: int = Field(512, ge=1, description="Hidden size of that MLP.")


@register
class Prefix(_VirtualTokens):
    name = "prefix"
    Config = PrefixConfig
    summary = "prefix tuning via PEFT: trained keys/values in every layer; not mergeable"
    default_lr = 1e-2  # sources: methods.base.default_lr_of

    def peft_config(self, handle):
        from peft import PrefixTuningConfig

        c = self.config
        return PrefixTuningConfig(task_type=task_type(handle), num_virtual_tokens=c.virtual_tokens,
                                  prefix_projection=c.projection, encoder_hidden_size=c.projection_size,
                                  modules_to_save=head_modules(handle))


class PromptConfig(PeftMethodConfig):
    virtual_tokens: int = Field(20, ge=1, description="Trained embeddings prepended to the input.")
    init: Literal["random", "text"] = Field("random", description="Start from random or a text.")
    init_text: str | None = Field(None, description="The text, when init is text.")

    @model_validator(mode="after")
    def _text_given(self):
        if (self.init == "text") != (self.init_text is not None):
            raise ValueError("init: text needs init_text, and init_text needs init: text")
        return self


@register
class Prompt(_VirtualTokens):
    name = "prompt"
    Config = PromptConfig
    summary = "prompt tuning via PEFT: trained input embeddings (random or text init); not mergeable"
    default_lr = 3e-2  # sources: methods.base.default_lr_of

    def peft_config(self, handle):
        from peft import PromptTuningConfig

        c = self.config
        text = {}
        if c.init == "text":
            text = {"prompt_tuning_init": "TEXT", "prompt_tuning_init_text": c.init_text,
                    "tokenizer_name_or_path": handle.model.config.name_or_path}
        return PromptTuningConfig(task_type=task_type(handle), num_virtual_tokens=c.virtual_tokens,
                                  modules_to_save=head_modules(handle), **text)
