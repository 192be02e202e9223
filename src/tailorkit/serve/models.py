"""The runs a server holds, by name (the run folder's name, which requests give as `model`).

PEFT adapter runs of one type on one base share that base, loaded once, the adapter switched
per call: classification/regression runs through an AdapterSet (heads of their own shapes),
causal-LM runs through one PeftModel holding every adapter. Every other run (image runs
included) is loaded alone.
Each loaded model has one lock, held from adapter switch to the end of the forward pass, so
concurrent requests for different adapters never run with each other's weights."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tailorkit.adapter_set import AdapterSet
from tailorkit.config.recipe import Recipe
from tailorkit.errors import TailorError
from tailorkit.export.preflight import peft_type
from tailorkit.inference import predict_images_with, predict_with
from tailorkit.methods.peft_wrap import TRAINED_BASE, quiet_peft
from tailorkit.models.handle import ModelHandle, handle_for
from tailorkit.pipeline.load import check_trust, load_run, run_recipe
from tailorkit.pipeline.run_dir import model_folder
from tailorkit.sources import resolve_model
from tailorkit.tasks import task_of


@dataclass
class Served:
    name: str
    recipe: Recipe
    handle: ModelHandle
    labels: list[str]
    lock: threading.Lock
    adapters: AdapterSet | None = None  # a classifier adapter sharing its base with others
    peft_name: str | None = None  # a causal-LM adapter sharing its base: its name in the PeftModel
    info: dict = field(default_factory=dict)

    @property
    def output(self) -> str:
        """classes, scalar or next_token (the run's own: a shared handle switches per adapter)."""
        return task_of(self.recipe).output

    @property
    def generates(self) -> bool:
        return self.output == "next_token"

    def activate(self) -> None:
        """Switch a shared base to this run's adapter; call with `lock` held."""
        if self.adapters is not None:
            self.adapters.use(self.name)
        elif self.peft_name is not None:
            self.handle.model.set_adapter(self.peft_name)

    @property
    def inputs(self) -> str:
        """What /v1/predict takes for this run: images, text pairs or texts."""
        if task_of(self.recipe).modality == "image":
            return "images"
        return "pairs" if self.recipe.data.text_pair_column else "texts"

    def predict(self, inputs: list) -> list[dict]:
        """Labels and probabilities (classification) or values (regression), one per input: a
        text, a (text, second text) pair for a pair run, or a decoded image for an image run."""
        kind = self.inputs
        with self.lock:
            if kind == "images":
                frame = predict_images_with(self.handle, self.recipe, self.labels, inputs,
                                            [f"images[{i}]" for i in range(len(inputs))])
            else:
                texts = [x[0] for x in inputs] if kind == "pairs" else inputs
                pairs = [x[1] for x in inputs] if kind == "pairs" else None
                frame = (self.adapters.predict(texts, self.name, pairs) if self.adapters is not None
                         else predict_with(self.handle, self.recipe, self.labels, texts, pairs))
        if self.output != "classes":
            return [{"value": float(v)} for v in frame["prediction"]]
        probs = frame[[f"p_{label}" for label in self.labels]].to_numpy(dtype=np.float64)
        return [{"label": label, "probabilities": dict(zip(self.labels, map(float, row), strict=True))}
                for label, row in zip(frame["prediction"], probs, strict=True)]


def _shareable(run_dir: Path, recipe: Recipe) -> tuple[str, str] | None:
    """(base, PEFT type, output, chat template) of a PEFT adapter text run that can share its base:
    one that trained nothing of the base itself, on a full-precision base."""
    kind = peft_type(run_dir)
    if (kind is None or task_of(recipe).modality != "text" or (model_folder(run_dir) / TRAINED_BASE).is_file()
            or recipe.model.quantize_base != "none"):
        return None
    output = task_of(recipe).output
    if output not in ("classes", "scalar", "next_token"):
        return None
    family = "generate" if output == "next_token" else "predict"
    return str(resolve_model(recipe.model.name).resolve()), kind, family, str(recipe.data.template)


def load_served(run_dirs: list[str | Path], *, trust_remote_code: bool = False) -> dict[str, Served]:
    dirs = [Path(d) for d in run_dirs]
    names = [d.resolve().name for d in dirs]
    if len(set(names)) != len(names):
        raise TailorError("serve: run folders must have different names; they name the models")
    recipes = {name: run_recipe(d) for name, d in zip(names, dirs, strict=True)}
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, d in zip(names, dirs, strict=True):
        key = _shareable(d, recipes[name])
        if key is not None:
            groups.setdefault(key, []).append(name)
    served: dict[str, Served] = {}
    where = dict(zip(names, dirs, strict=True))
    for key, members in groups.items():
        if len(members) < 2:
            continue
        if key[2] == "generate":
            served |= _shared_lm(members, where, recipes, trust_remote_code)
            continue
        adapters, lock = AdapterSet(trust_remote_code=trust_remote_code), threading.Lock()
        for name in members:
            adapters.add(name, where[name])
        for name in members:
            labels = adapters.adapters[name][1]
            served[name] = Served(name, recipes[name], adapters.handle, labels, lock, adapters=adapters,
                                  info={"shared_base": members})
    for name, d in where.items():
        if name not in served:
            recipe, handle, labels, _ = load_run(d, trust_remote_code=trust_remote_code)
            served[name] = Served(name, recipe, handle, labels, threading.Lock())
    return {name: served[name] for name in names}


def _shared_lm(members: list[str], where: dict[str, Path], recipes: dict[str, Recipe],
               trust_remote_code: bool) -> dict[str, Served]:
    """One causal-LM base with every member's adapter loaded under the member's name."""
    from peft import PeftModel

    first = recipes[members[0]]
    for name in members:
        check_trust(where[name], recipes[name], trust_remote_code)
    base = task_of(first).build_base(first, [])
    with quiet_peft():
        model = PeftModel.from_pretrained(base.model, model_folder(where[members[0]]),
                                          adapter_name=members[0])
        for name in members[1:]:
            model.load_adapter(model_folder(where[name]), adapter_name=name)
    model.eval()
    handle = handle_for(model, base.tokenizer, "next_token")
    lock = threading.Lock()
    return {name: Served(name, recipes[name], handle, [], lock, peft_name=name, info={"shared_base": members})
            for name in members}


def describe(entry: Served) -> dict:
    return {"id": entry.name, "object": "model", "owned_by": "tailorkit", "task": entry.recipe.task,
            "labels": entry.labels or None, **entry.info}
