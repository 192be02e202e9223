"""Compression after training: the `compress` stage of a recipe, and `tailor compress RUN_DIR`.

Both run the same chain (`tailor compress` through `inference.compress_run`). The trained
model (adapters merged into it first) goes through the steps in order; after each step a new
run directory `<output_dir>/<i>-<step>/` gets the model, its test predictions and a summary
that sets size, parameters, latency and test metrics beside the source run's. The source run
is only read. A compressed run's recipe.yaml is the source recipe with the steps done so far,
so `tailor predict`, `eval` and `generate` load it like any other run.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import torch

from tailorkit.compress import build_steps, model_writer
from tailorkit.compress.measure import latency_ms, parameter_counts, source_weights_mb, weights_mb
from tailorkit.config.compress import CompressConfig
from tailorkit.config.recipe import Recipe
from tailorkit.errors import TailorError
from tailorkit.methods import Method, model_owner
from tailorkit.models.handle import ModelHandle
from tailorkit.pipeline.run_dir import (
    MODEL,
    SUMMARY,
    claim_run_dir,
    save_model_atomically,
    write_json_atomically,
)
from tailorkit.pipeline.stages import Run, Stage
from tailorkit.recipe import dump_recipe
from tailorkit.runtime import versions
from tailorkit.tasks import Task
from tailorkit.train.setup import Setup


class Compress(Stage):
    name = "compress"
    section = "compress"
    skip_when_done = True

    def run(self, run: Run) -> None:
        cfg = run.recipe.compress
        out = Path(cfg.output_dir or f"{run.recipe.output_dir}-compressed")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        source = plain_model(copy.deepcopy(run.setup.handle), run.setup.methods, run.run_dir)
        compress_chain(run.recipe, run.task, source, run.setup, cfg, run.run_dir, run.test,
                       claim_run_dir(out, True))


def plain_model(handle: ModelHandle, methods: list[Method], run_dir: Path) -> ModelHandle:
    """The trained model without an adapter: a method that keeps its weights apart merges them."""
    owner = model_owner(methods)
    refusal = owner.compress_refusal() if owner is not None else ""
    if refusal:
        raise TailorError(f"compress: {run_dir}: {refusal}")
    if owner is not None:
        try:
            owner.merge(handle)
        except TailorError as err:
            raise TailorError(f"compress: {run_dir}: {err}; compress works on a whole model") from None
    return handle


def compress_chain(recipe: Recipe, task: Task, original: ModelHandle, setup: Setup, cfg: CompressConfig,
                   source_run: Path, source_test: dict, out_root: Path) -> list[Path]:
    """Run every step in turn on a copy of `original` (the source run's whole model, left as it
    is: each step's model is timed beside it); one run directory per step under `out_root`."""
    test = setup.splits["test"]
    torch_threads = torch.get_num_threads()
    handle = copy.deepcopy(original)
    source = {"run": str(source_run), "test": source_test,
              "weights_mb": source_weights_mb(source_run / MODEL, original)}
    steps, dirs = build_steps(cfg.steps), []
    for i, step in enumerate(steps, 1):
        run_dir = out_root / f"{i}-{step.name}"
        run_dir.mkdir()
        report = step.apply(handle, setup.splits["train"])
        done = cfg.model_copy(update={"steps": cfg.steps[:i], "output_dir": str(out_root)})
        step_recipe = recipe.model_copy(update={"compress": done, "output_dir": str(run_dir)})
        (run_dir / "recipe.yaml").write_text(dump_recipe(step_recipe))
        save_model_atomically(handle, model_writer(steps[:i]), setup.labels, run_dir / MODEL)
        metrics = task.write_test_outputs(replace(setup, handle=handle), step_recipe, run_dir)
        before, latency = latency_ms([original, handle], test, cfg.latency_batches, cfg.latency_examples)
        write_json_atomically(run_dir / SUMMARY, {
            "task": recipe.task, "model": recipe.model.name, "compressed_from": source["run"],
            "steps": [s.model_dump() for s in cfg.steps[:i]], step.name: report,
            "labels": setup.labels, "test": metrics,
            "parameters": parameter_counts(handle), "weights_mb": weights_mb(run_dir / MODEL),
            "latency_ms": latency, "threads": torch_threads,
            "speedup": {b: round(before[b] / latency[b], 3) for b in latency},
            "source": {**source, "latency_ms": before}, "versions": versions(),
        })
        dirs.append(run_dir)
    return dirs
