"""IA3 (Liu et al. 2022, "Few-shot parameter-efficient fine-tuning is better and
cheaper than in-context learning"), through PEFT.

Learned vectors rescale the keys, the values and the feed-forward activations
elementwise: about 0.01% of the parameters. Starts at ones, i.e. at the base
model; merging multiplies the vectors into the weights.
"""

from __future__ import annotations

from pydantic import Field

from tailorkit.methods.base import register
from tailorkit.methods.peft_wrap import PeftMethod, PeftMethodConfig, head_modules, task_type


class IA3Config(PeftMethodConfig):
    targets: list[str] | None = Field(
        None, description="Modules to rescale; default: PEFT's choice for the architecture "
                          "(keys, values, FFN output).")
    feedforward: list[str] | None = Field(
        None, description="Which targets are feed-forward (scaled on the input side).")


@register
class IA3(PeftMethod):
    name = "ia3"
    Config = IA3Config
    summary = "IA3 learned rescaling vectors via PEFT; mergeable"
    default_lr = 3e-3  # sources: methods.base.default_lr_of
    mergeable = True
    modalities = frozenset({"text"})
    needs = "it rescales a transformer's attention keys and values"

    def peft_config(self, handle):
        from peft import IA3Config as PeftIA3Config

        c = self.config
        return PeftIA3Config(task_type=task_type(handle), target_modules=c.targets,
                             feedforward_modules=c.feedforward, modules_to_save=head_modules(handle))
