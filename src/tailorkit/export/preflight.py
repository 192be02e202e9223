"""What each format cannot hold, refused before anything is written, with the reason."""

from __future__ import annotations

import json
from pathlib import Path

from tailorkit.config.recipe import Recipe
from tailorkit.errors import TailorError
from tailorkit.methods import build_methods
from tailorkit.models.structure import STRUCTURE, has_structure
from tailorkit.pipeline.run_dir import model_folder
from tailorkit.sources import resolve_model
from tailorkit.tasks import task_of

FORMATS = ("hf", "onnx", "gguf")
VIRTUAL_TOKENS = ("PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING")


def has_adapter(run_dir: Path) -> bool:
    """The run saved an adapter (PEFT's or tailorkit's own) rather than a whole model."""
    return (model_folder(run_dir) / "adapter_config.json").is_file()


def peft_type(run_dir: Path) -> str | None:
    """The PEFT type of the run's adapter (LORA, IA3, PREFIX_TUNING...); None for a whole model
    or an adapter tailorkit wrote itself (bottleneck)."""
    if not has_adapter(run_dir):
        return None
    raw = json.loads((model_folder(run_dir) / "adapter_config.json").read_text())
    return None if "tailorkit_method" in raw else raw.get("peft_type")


def preflight(run_dir: Path, recipe: Recipe, fmt: str, dequantize: bool) -> None:
    if fmt not in FORMATS:
        raise TailorError(f"--format {fmt}: not a format (choose from {', '.join(FORMATS)})")
    if recipe.compress is not None:
        raise TailorError(f"{run_dir}: a compressed run's model/ folder is already its exported form "
                          "(torch quantised or pruned layers, which neither merging nor the ONNX tracer "
                          "takes); export the run it was compressed from")
    for method in build_methods(recipe.methods):
        if why := method.export_refusal(fmt):
            raise TailorError(f"{run_dir}: {why}")
    kind = peft_type(run_dir)
    if kind in VIRTUAL_TOKENS and fmt in ("hf", "gguf"):
        raise TailorError(f"{run_dir}: a {kind.lower()} adapter adds virtual tokens in front of every "
                          "input; no weight of the base can hold them, so there is no merged model "
                          "to export. Serve the run as it is (tailor serve)")
    if kind in VIRTUAL_TOKENS and fmt == "onnx":
        raise TailorError(f"{run_dir}: ONNX export of a {kind.lower()} adapter (virtual tokens built "
                          "inside PEFT's forward) is not supported; serve the run (tailor serve)")
    if fmt == "gguf" and task_of(recipe).output != "next_token":
        raise TailorError(f"{run_dir}: GGUF export is for causal LMs (llama.cpp); this {recipe.task} run "
                          "exports as hf or onnx")
    if fmt == "gguf" and has_adapter(run_dir) and kind is None:
        raise TailorError(f"{run_dir}: a bottleneck adapter adds layers that llama.cpp's Llama graph "
                          "does not have, and it cannot be merged into the base; export --format hf "
                          "keeps nothing either: serve the run (tailor serve) or train LoRA instead")
    if recipe.model.quantize_base != "none" and fmt in ("hf", "gguf") and not dequantize:
        raise TailorError(f"{run_dir}: the base is {recipe.model.quantize_base} 4-bit; a merge folds the "
                          "adapter into dequantised fp32 weights (a larger, plain model). Pass "
                          "--dequantize to accept that")
    if fmt in ("hf", "gguf") and _reshaped(run_dir, recipe):
        raise TailorError(f"{run_dir}: structured pruning reshaped its layers ({STRUCTURE}: fewer heads or "
                          "FFN neurons than its config says), which a plain transformers folder cannot "
                          "describe: from_pretrained would refuse it. Export --format onnx, or load the "
                          "run's model/ with tailorkit (tailor predict, serve, api.load_run)")
    if fmt == "onnx" and task_of(recipe).output not in ("classes", "scalar"):
        raise TailorError(f"{run_dir}: ONNX export covers classification, regression and image "
                          f"runs; this {recipe.task} run is not one (export --format hf)")


def _reshaped(run_dir: Path, recipe: Recipe) -> bool:
    """The run's model, or the base its adapter sits on, has layers its config does not describe."""
    return has_structure(model_folder(run_dir)) or (has_adapter(run_dir) and
                                                    has_structure(resolve_model(recipe.model.name)))
