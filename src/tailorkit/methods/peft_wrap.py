"""What the PEFT-backed methods (LoRA, IA3, prefix and prompt tuning) share.

PEFT wraps the model; the handle's prefixes move under the wrapper so depth
and head lookups keep working. The base is frozen except for the parameters
an earlier method chose (see `chosen_before`); the new task head trains as a
PEFT `modules_to_save` copy, so it lands in the adapter folder and plain
`PeftModel.from_pretrained(base, folder)` restores the whole classifier.

Base parameters that an earlier method made trainable (say, BitFit biases
before LoRA) are not part of a PEFT adapter; they go to `trained_base.safetensors`
beside it, under the adapted model's parameter names.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

from pydantic import Field, model_validator
from safetensors.torch import load_file, save_file
from torch import nn

from tailorkit.config.plugins import set_options
from tailorkit.errors import TailorError, first_line
from tailorkit.methods.base import Method, MethodConfig, chosen_before
from tailorkit.models.handle import ModelHandle

TRAINED_BASE = "trained_base.safetensors"


class PeftMethodConfig(MethodConfig):
    init_from: str | None = Field(
        None, description="Start from this PEFT adapter folder (its own config applies; for "
                          "evaluation, prediction or further training).")

    @model_validator(mode="after")
    def _init_from_alone(self):
        if self.init_from is not None:
            others = [name for name in set_options(self) if name != "init_from"]
            if others:
                raise ValueError(f"init_from uses the adapter folder's own configuration; remove "
                                 f"{', '.join(others)}")
        return self


@contextlib.contextmanager
def quiet_peft():
    """PEFT calls a transformers API that warns about its removal in v6; not the user's concern."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def task_type(handle: ModelHandle):
    from peft import TaskType

    if handle.modality == "image":
        return None  # a plain nn.Module: PEFT's generic model
    if handle.output in ("classes", "scalar"):
        return TaskType.SEQ_CLS
    if handle.output == "next_token":
        return TaskType.CAUSAL_LM
    if handle.output == "masked_token":
        return None  # PEFT has no masked-LM task type; the plain PeftModel fits
    raise TailorError(f"PEFT methods do not support models that predict {handle.output} yet")


class PeftMethod(Method):
    adapter = True

    def peft_config(self, handle: ModelHandle):
        raise NotImplementedError

    def apply(self, handle: ModelHandle) -> None:
        from peft import PeftModel, get_peft_model

        keep = chosen_before(handle)
        inner = handle.model
        self._base_ids = {id(p) for p in inner.parameters()}
        if self.config.init_from:
            folder = Path(self.config.init_from).expanduser()
            if not (folder / "adapter_config.json").is_file():
                raise TailorError(f"{self.name}.init_from: {folder} has no adapter_config.json")
            try:
                with quiet_peft():
                    handle.model = PeftModel.from_pretrained(inner, folder, is_trainable=True)
            except ValueError as err:  # e.g. a prefix-tuning folder, which PEFT cannot train further
                raise TailorError(f"{self.name}.init_from: {folder}: PEFT refuses it: "
                                  f"{first_line(err)}") from None
        else:
            try:
                with quiet_peft():
                    handle.model = get_peft_model(inner, self.peft_config(handle))
            except ValueError as err:  # e.g. targets that name no layer of the model
                raise TailorError(f"{self.name}: PEFT refuses this configuration: {first_line(err)} (the "
                                  f"model's linear layers, which targets may name: "
                                  f"{', '.join(linear_names(inner))})") from None
        handle.rebase(inner)
        replaced = {id(p) for m in handle.model.modules() if hasattr(m, "original_module")
                    for p in m.original_module.parameters()}
        for p in keep:
            if id(p) not in replaced:  # PEFT trains its own copy of the head
                p.requires_grad_(True)

    def _trained_base(self, handle: ModelHandle) -> dict:
        return {n: p.detach().contiguous() for n, p in handle.model.named_parameters()
                if p.requires_grad and id(p) in self._base_ids}

    def save_adapter(self, handle: ModelHandle, directory: Path) -> None:
        handle.model.save_pretrained(directory)  # adapter_config.json + adapter_model.safetensors
        trained_base = self._trained_base(handle)
        if trained_base:
            save_file(trained_base, str(directory / TRAINED_BASE))

    def load_adapter(self, handle: ModelHandle, directory: Path) -> None:
        from peft import set_peft_model_state_dict

        state = load_file(str(directory / "adapter_model.safetensors"))
        result = set_peft_model_state_dict(handle.model, state)
        # PEFT loads the virtual tokens itself and then still reports them as unexpected
        unexpected = [k for k in result.unexpected_keys if k != "prompt_embeddings"]
        if unexpected:
            raise TailorError(f"{directory}: adapter tensors the model lacks: {unexpected[:3]}")
        if (directory / TRAINED_BASE).is_file():
            extra = load_file(str(directory / TRAINED_BASE))
            unknown = set(extra) - set(handle.model.state_dict())
            if unknown:
                raise TailorError(f"{directory / TRAINED_BASE}: unknown tensors {sorted(unknown)[:3]}")
            handle.model.load_state_dict(extra, strict=False)

    def merge(self, handle: ModelHandle) -> None:
        handle.unwrap(handle.model.merge_and_unload())


def linear_names(model) -> list[str]:
    """The last names of the model's linear layers: what `targets` may list."""
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})


def head_modules(handle: ModelHandle) -> list[str] | None:
    """The new task head, trained and saved with the adapter; a causal LM keeps its own."""
    if handle.output in ("next_token", "masked_token"):
        return None
    if not handle.head_modules:
        raise TailorError("the model has no task head outside its backbone; PEFT cannot save one")
    return list(handle.head_modules)
