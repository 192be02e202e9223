"""Reading a finished run back: its recipe, and its model ready for inference (whatever saved
it: the whole model, an adapter or feature head on the recipe's base, or a compression step's
format). `tailor predict`/`eval`/`merge`/`compress` use it, and so does distillation, for its
teacher (the pipeline hands it to methods as `Setup.load_run`: methods sit below this module)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from tailorkit.compress import build_steps, model_writer
from tailorkit.config.recipe import Recipe
from tailorkit.device import resolve
from tailorkit.errors import TailorError
from tailorkit.methods import Method, build_methods, model_owner
from tailorkit.models.handle import ModelHandle
from tailorkit.models.quantize import NF4Spec, dequantize_in_place
from tailorkit.pipeline.run_dir import LABELS, model_folder
from tailorkit.recipe import load_recipe
from tailorkit.tasks import task_of


def load_run(run_dir: str | Path, dequantize: bool = False, *, trust_remote_code: bool = False
             ) -> tuple[Recipe, ModelHandle, list[str], list[Method]]:
    """The finished model, ready for inference; for adapter runs, base + methods + adapter.

    `dequantize` turns a 4-bit (QLoRA) base into fp32 layers holding its dequantised weights,
    so a merge gives a plain model that computes what the QLoRA model computes.
    `trust_remote_code` must be given for a run whose recipe turns it on (see `check_trust`)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    run_dir = Path(run_dir)
    model_dir = model_folder(run_dir)
    recipe = run_recipe(run_dir)
    check_trust(run_dir, recipe, trust_remote_code)
    if not model_dir.is_dir():
        raise TailorError(f"{run_dir}: the run has no final model yet; finish it with "
                          f"`tailor train --resume {run_dir}`")
    task = task_of(recipe)
    labels = json.loads((model_dir / LABELS).read_text()) if (model_dir / LABELS).is_file() else []
    methods = build_methods(recipe.methods)
    owner = model_owner(methods)
    if recipe.compress is not None:  # a compressed run: a whole model, in its last step's format
        writer = model_writer(build_steps(recipe.compress.steps))
        handle = (writer.load_model(task, recipe, model_dir, labels) if writer
                  else task.load_model(recipe, model_dir, labels)[0])
        methods = []
    elif owner is None:  # the whole model was saved
        handle, labels = task.load_model(recipe, model_dir, labels)
        methods = []
    else:  # the recipe's base, rebuilt, plus what the owning method saved
        handle = owner.load_model(methods, task.build_base(recipe, labels), model_dir, NF4Spec.of(recipe))
        if dequantize:
            dequantize_in_place(handle.model)
    # The run's train.device where this machine has it (a GPU run read on a laptop: auto's pick).
    handle.model.to(resolve(recipe.train.device, fallback=True))
    handle.model.eval()
    return recipe, handle, labels, methods


def run_recipe(run_dir: str | Path) -> Recipe:
    """The resolved recipe a run recorded (cheap: no model is loaded). tailorkit wrote it, so a
    field it has since renamed (train.bf16) is read without the warning meant for recipe authors."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise TailorError(f"{run_dir}: no such run directory")
    if not (run_dir / "recipe.yaml").is_file():
        raise TailorError(f"{run_dir}: not a tailorkit run directory (no recipe.yaml)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return load_recipe(run_dir / "recipe.yaml")


def check_trust(run_dir: str | Path, recipe: Recipe, trust_remote_code: bool) -> None:
    """A run folder may come from someone else: its recipe alone cannot turn on running the
    code in its model folder; the caller must allow it too (`--trust-remote-code`)."""
    if recipe.model.trust_remote_code and not trust_remote_code:
        raise TailorError(f"{run_dir}: its recipe turns on model.trust_remote_code, which runs code from "
                          "the model folder; pass --trust-remote-code to allow it")
