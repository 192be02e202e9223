"""Several trained adapters on one base model, loaded once, switched per request.

Each adapter is a finished tailorkit run whose method is PEFT-backed (LoRA,
IA3, prefix, prompt). Their heads may differ in size (a 5-topic adapter and a
3-sentiment adapter share one base): PEFT copies the base head for every new
adapter, so we first put a head of the adapter's own shape in that slot.

    adapters = AdapterSet()
    adapters.add("topic", "runs/bbc-lora")
    adapters.add("sentiment", "runs/tweets-lora")
    adapters.predict(["Shares fell"], adapter="topic")
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

from tailorkit.errors import TailorError
from tailorkit.inference import predict_with
from tailorkit.methods.peft_wrap import TRAINED_BASE, quiet_peft
from tailorkit.models.handle import ModelHandle, handle_for, load_text_classifier
from tailorkit.pipeline.load import check_trust, run_recipe
from tailorkit.pipeline.run_dir import LABELS
from tailorkit.recipe import Recipe
from tailorkit.sources import resolve_model
from tailorkit.tasks import task_of


class AdapterSet:
    def __init__(self, *, trust_remote_code: bool = False) -> None:
        self.trust_remote_code = trust_remote_code  # allows runs whose recipe turns it on
        self.handle: ModelHandle | None = None
        self.base: Path | None = None
        self.adapters: dict[str, tuple[Recipe, list[str]]] = {}  # name -> (recipe, labels)
        self.folders: list[Path] = []

    def add(self, name: str, run_dir: str | Path) -> None:
        from peft import PeftModel  # heavy, and imports bitsandbytes (which prints) when installed

        run_dir = Path(run_dir)
        recipe, labels, folder = _adapter_run(run_dir)
        check_trust(run_dir, recipe, self.trust_remote_code)
        if name in self.adapters:
            raise TailorError(f"adapter '{name}' is already loaded")
        base = resolve_model(recipe.model.name).resolve()
        if self.handle is None:
            output = task_of(recipe).output
            plain = load_text_classifier(base, output, labels, recipe.model.trust_remote_code)
            with quiet_peft():
                model = PeftModel.from_pretrained(plain.model, folder, adapter_name=name)
            self.handle, self.base = handle_for(model, plain.tokenizer, output), base
        else:
            if base != self.base:
                raise TailorError(f"{run_dir}: adapter trained on {base}, but the set's base is {self.base}")
            kind, first = _peft_type(folder), _peft_type(self.folders[0])
            if kind != first:
                raise TailorError(f"{run_dir}: its {kind} adapter cannot join the {first} adapters "
                                  "already loaded on one base (PEFT keeps one method type per model); "
                                  "predict with these runs one at a time")
            _shape_heads(self.handle.model, folder, name)
            with quiet_peft():
                self.handle.model.load_adapter(folder, adapter_name=name)
        self.handle.model.eval()
        self.adapters[name] = (recipe, labels)
        self.folders.append(folder)

    def use(self, name: str) -> None:
        if name not in self.adapters:
            raise TailorError(f"no adapter '{name}' (loaded: {', '.join(self.adapters) or 'none'})")
        self.handle.model.set_adapter(name)
        self.handle.output = task_of(self.adapters[name][0]).output

    def predict(self, texts: list[str], adapter: str, pairs: list[str] | None = None) -> pd.DataFrame:
        """Predictions of one adapter; a run trained on text pairs needs `pairs` (one per text)."""
        self.use(adapter)
        recipe, labels = self.adapters[adapter]
        return predict_with(self.handle, recipe, labels, texts, pairs)


def _adapter_run(run_dir: Path) -> tuple[Recipe, list[str], Path]:
    folder = run_dir / "model"
    config = folder / "adapter_config.json"
    if not config.is_file():
        raise TailorError(f"{run_dir}: not a finished adapter run (no model/adapter_config.json)")
    if "tailorkit_method" in json.loads(config.read_text()):
        raise TailorError(f"{run_dir}: bottleneck adapters cannot share a base yet; only PEFT methods "
                          "(lora, ia3, prefix, prompt)")
    if (folder / TRAINED_BASE).is_file():
        raise TailorError(f"{run_dir}: this run also trained base weights ({TRAINED_BASE}), so its "
                          "base differs from the shared one; merge it or use it alone")
    return run_recipe(run_dir), json.loads((folder / LABELS).read_text()), folder


def _peft_type(folder: Path) -> str:
    return json.loads((folder / "adapter_config.json").read_text())["peft_type"]


def _shape_heads(model: torch.nn.Module, folder: Path, name: str) -> None:
    """Give each PEFT head copy for adapter `name` the shapes stored in its folder."""
    state = load_file(str(folder / "adapter_model.safetensors"))
    for path, module in model.named_modules():
        if not hasattr(module, "original_module") or not hasattr(module, "modules_to_save"):
            continue
        head = copy.deepcopy(module.original_module)
        for pname, param in list(head.named_parameters()):
            stored = state.get(f"{path}.{pname}")
            if stored is not None and stored.shape != param.shape:
                owner = head.get_submodule(pname.rpartition(".")[0]) if "." in pname else head
                setattr(owner, pname.rpartition(".")[2], torch.nn.Parameter(torch.empty_like(stored)))
        module.modules_to_save[name] = head
