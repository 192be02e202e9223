"""A plain Hugging Face folder: the adapter merged into its base (`tailor merge`), or the
whole fine-tuned model copied; transformers reads it back for the parity check."""

from __future__ import annotations

import shutil
from pathlib import Path

from tailorkit.config.recipe import Recipe
from tailorkit.export.parity import Runner, torch_runner
from tailorkit.inference import merge, merged_recipe
from tailorkit.pipeline.load import load_run
from tailorkit.pipeline.run_dir import model_folder


def export_hf(run_dir: Path, recipe: Recipe, has_adapter: bool, out: Path, trust_remote_code: bool) -> Runner:
    if has_adapter:
        merge(run_dir, out, trust_remote_code=trust_remote_code)
    else:  # the whole model was trained: its files already are a plain model
        shutil.copytree(model_folder(run_dir), out, dirs_exist_ok=True)
        (out / "recipe.yaml").write_text(merged_recipe(recipe, run_dir, out))
    _, handle, _, _ = load_run(out, trust_remote_code=trust_remote_code)
    return torch_runner(handle)
