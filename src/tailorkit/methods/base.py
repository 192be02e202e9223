"""The Method protocol and its registry.

A method is a small object built from a typed config. `apply` adapts a ModelHandle in place
(usually by choosing what trains, or by adding modules). Methods compose in recipe order.
Adding a method is one `@register` on a class: that puts its options in the recipe schema
(`config.METHOD_CONFIGS`) and the class in `METHODS`, which `tailor methods`, the pipeline and
the contract tests read.

Every hook has a harmless default, so a method only writes what it changes. Methods that own
more of the run than the model's weights say so through hooks, never through their name:
`adapt` may replace the whole setup (feature extraction), `make_trainer` the loop,
`save_model`/`load_model` the run's model/ folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from pydantic import ValidationError

from tailorkit.config.base import format_validation_error
from tailorkit.config.methods import METHOD_CONFIGS, MethodConfig, MethodSpec, parse_methods
from tailorkit.config.train import TRAINER_LR
from tailorkit.errors import TailorError
from tailorkit.models.handle import ModelHandle
from tailorkit.models.quantize import NF4Spec
from tailorkit.train.setup import Setup


class Method:
    name: ClassVar[str]
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    summary: ClassVar[str] = ""
    # An adapter method keeps its trained weights apart from the base model: the run
    # saves an adapter folder (save_adapter) instead of a whole model.
    adapter: ClassVar[bool] = False
    # The model kinds it works on; recipe validation refuses the others before any loading.
    modalities: ClassVar[frozenset[str]] = frozenset({"text", "image"})
    needs: ClassVar[str] = ""  # why it is limited, for that message
    # Wants every split preprocessed as for evaluation (no augmentation): its inputs are
    # computed once (feature extraction).
    fixed_inputs: ClassVar[bool] = False
    # Leaves the frozen lower blocks computing what the base computes, so their outputs can be
    # cached (train/frozen_prefix.py); adapters inside them, or extra inputs, change it.
    keeps_frozen_prefix: ClassVar[bool] = False
    # Its `objective` reads the full logits (distillation), so a causal LM's loss cannot skip
    # computing them (evaluate/lm_head_loss.py).
    needs_logits: ClassVar[bool] = False
    # Its trained weights fold into the base (`merge`): a plain model comes out.
    mergeable: ClassVar[bool] = False
    # Trains on a frozen 4-bit base (model.quantize_base: nf4) and quantises it (QLoRA).
    trains_on_quantized_base: ClassVar[bool] = False
    # The peak learning rate when the recipe sets no train.lr; None: the trainer's (5e-5, as for
    # full fine-tuning). Freshly initialised, few parameters (adapters, LoRA, prompts, a new
    # head) need a higher rate; the values and their sources are in `default_lr_of`.
    default_lr: ClassVar[float | None] = None

    def __init__(self, config: MethodConfig) -> None:
        self.config = config

    def apply(self, handle: ModelHandle) -> None:
        raise NotImplementedError

    def check_recipe(self, recipe, task, where: str) -> None:
        """Refuse a recipe this method cannot serve (its task, other methods) with a ValueError
        naming the field; runs when the recipe is loaded, before anything loads."""

    def adapt(self, setup: Setup, task, recipe) -> Setup:
        """Adapt what the run trains on; most methods change the model in place."""
        self.apply(setup.handle)
        return setup

    def make_trainer(self, setup: Setup, recipe, run_dir: Path):
        """A loop of the method's own (offering fit, trained_parameter_count, sink, last_val,
        steps_per_epoch and prefix_report); None: the standard Trainer."""
        return None

    def fits_without_gradients(self, handle: ModelHandle) -> bool:
        """Trains something that is not a parameter (a scikit-learn head), so a model with
        nothing trainable is still a run."""
        return False

    def on_fit_end(self, setup: Setup, seconds: float) -> None:
        """Called once training is over, with the seconds it took."""

    def lr_scales(self, handle: ModelHandle) -> dict[str, float]:
        """Per-parameter learning-rate multipliers (name -> factor); empty means 1 for all."""
        return {}

    def on_epoch_start(self, handle: ModelHandle, epoch: int) -> None:
        """Called before every epoch (also when resuming mid-epoch)."""

    def on_step(self, handle: ModelHandle, step: int, total_steps: int) -> None:
        """Called after every optimiser step (`step` counts from 1), before any checkpoint."""

    def objective(self, objective: torch.Tensor, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """The training objective of a batch, given the task's (the loss the run reports);
        a method may add a term of its own (distillation's teacher term)."""
        return objective

    def quantize_base(self, handle: ModelHandle, spec: NF4Spec) -> None:
        """Methods with `trains_on_quantized_base`: turn the frozen base into 4-bit weights."""
        raise NotImplementedError

    # -- the run's model/ folder ------------------------------------------------------------
    @property
    def saves_model(self) -> bool:
        """The run's model/ folder is this method's (an adapter folder), not the whole model."""
        return self.adapter

    def save_model(self, handle: ModelHandle, directory: Path) -> None:
        self.save_adapter(handle, directory)
        if handle.tokenizer is not None:
            handle.tokenizer.save_pretrained(directory)

    def load_model(self, methods: list[Method], base: ModelHandle, directory: Path,
                   nf4: NF4Spec | None = None) -> ModelHandle:
        """What `save_model` wrote, on the recipe's freshly built `base`. Adapters apply the
        recipe's `methods` (this one among them) again, which re-derives a 4-bit base the same way."""
        for method in methods:
            method.apply(base)
        finish_methods(base, methods, nf4)
        self.load_adapter(base, directory)
        return base

    def save_adapter(self, handle: ModelHandle, directory: Path) -> None:
        """Adapter methods: write adapter_config.json + adapter_model.safetensors."""
        raise NotImplementedError

    def load_adapter(self, handle: ModelHandle, directory: Path) -> None:
        """Adapter methods: load what save_adapter wrote into a handle `apply` prepared."""
        raise NotImplementedError

    def export_refusal(self, fmt: str) -> str:
        """Why `tailor export --format fmt` cannot hold what this method trained ("" if it can)."""
        return ""

    def compress_refusal(self) -> str:
        """Why compression cannot start from what this method saved ("" if it can: a whole
        model, or an adapter that merges into one first)."""
        if self.mergeable or not self.saves_model:
            return ""
        return (f"{self.name} keeps its weights apart from the model and cannot be merged into it; "
                "compress a run of a mergeable method (lora, ia3) or a whole model")

    def merge(self, handle: ModelHandle) -> None:
        """Fold the trained weights into the base so the result is a plain model."""
        raise TailorError(f"method '{self.name}' has nothing to merge: its weights are the model's")


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if cls.name in METHODS:
        raise ValueError(f"method '{cls.name}' registered twice")
    METHODS[cls.name] = cls
    METHOD_CONFIGS[cls.name] = cls.Config
    return cls


def build_methods(specs: list) -> list[Method]:
    """Methods from the recipe's specs (or the YAML forms, `lora` / `{lora: {r: 8}}`)."""
    try:
        specs = parse_methods(list(specs))
    except ValidationError as err:
        raise TailorError(format_validation_error(err, None, MethodSpec, prefix="methods")) from None
    methods = [METHODS[spec.name](spec.config) for spec in specs]
    adapter_method(methods)
    return methods


def default_lr_of(specs: list) -> float:
    """The peak learning rate of a recipe that sets no `train.lr`: the largest `default_lr` of
    its methods, or the trainer's `TRAINER_LR` (5e-5) when none has one. A recipe has at most one
    adapter method, and the partial fine-tuning methods have no default of their own, so in
    `[freeze: {bias: true}, lora]` LoRA's rate applies to everything that trains.

    Sources. The anchors' own examples train for many epochs (20 to 50); the recipe default is 3,
    and on a small set that is about 100 steps. Measured on 500 tweets with MiniLM-L6 and the
    default recipe (README, "Learning-rate defaults"; 2026-11-30), the anchors' LoRA, IA3 and
    bottleneck rates (1e-4 to 3e-4) still predicted the majority class, or nearly so, after those
    steps; the rates below beat it, and are the ones tailorkit's own BBC News recipes use
    (recipes/bbc-*.yaml, docs/methods.md).
      full, freeze, layerwise_lr, gradual_unfreeze, distill, gradual_prune (and any method
        without a default): 5e-5, BERT's fine-tuning range 2e-5 to 5e-5; LLaMA-Factory's
        examples/train_full/llama3_full_sft.yaml uses 1e-5
      lora: 1e-3. PEFT examples/sequence_classification/LoRA.ipynb: 3e-4 (r=8, alpha=16 as
        here; 20 epochs); LLaMA-Factory examples/train_lora/llama3_lora_sft.yaml: 1e-4 (8B
        LLM); recipes/bbc-lora.yaml: 1e-3; tweets: 3e-4 reached 0.51-0.56 accuracy against
        0.42, 1e-3 reached 0.65-0.67, as full fine-tuning did
      ia3: 3e-3. The IA3 paper (Liu et al. 2022, T-Few); PEFT
        examples/sequence_classification/IA3.ipynb: 3e-4 (20 epochs); tweets: 3e-4 predicted
        the majority class only, 3e-3 beat it
      bottleneck: 1e-3. AdapterHub docs/training.md: 1e-4 ("works well for most settings",
        10 epochs); recipes/bbc-houlsby.yaml, bbc-pfeiffer.yaml: 1e-3; tweets: 1e-4 predicted
        the majority class, 1e-3 beat it
      prefix: 1e-2. PEFT examples/sequence_classification/prefix_tuning.ipynb
      prompt: 3e-2. PEFT examples/causal_language_modeling/peft_prompt_tuning_clm.ipynb
        (its sequence-classification example uses 1e-3, which predicted the majority class
        on the tweets); recipes/bbc-prompt.yaml
      features: 1e-3, the new head's own rate (features.head_lr)"""
    rates = [METHODS[spec.name].default_lr for spec in parse_methods(list(specs))]
    return max((rate for rate in rates if rate is not None), default=TRAINER_LR)


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


def model_owner(methods: list[Method]) -> Method | None:
    """The method whose files make the run's model/ folder; None: the whole model is saved."""
    return next((m for m in methods if m.saves_model), None)


def finish_methods(handle: ModelHandle, methods: list[Method], nf4: NF4Spec | None = None) -> None:
    """After every method is applied: something must train, and with a 4-bit base the
    method that trains on it quantises what stays frozen."""
    if not handle.trainable_names() and not any(m.fits_without_gradients(handle) for m in methods):
        raise TailorError("methods: after applying them nothing is trainable; check the freeze options")
    if nf4 is not None:
        next(m for m in methods if m.trains_on_quantized_base).quantize_base(handle, nf4)


def apply_methods(handle: ModelHandle, specs: list, nf4: NF4Spec | None = None) -> list[Method]:
    """Build the methods of `specs` and apply them to `handle` in order."""
    methods = build_methods(specs)
    for method in methods:
        method.apply(handle)
    finish_methods(handle, methods, nf4)
    return methods
