"""`tailor train`, top to bottom: this file is the whole run.

    recipe.yaml ─► claim the run directory ─► threads, oneDNN
                ─► prepare ─► train ─► save ─► evaluate      (stages.py; one class each)
                ─► compress, when the recipe has a compress: section (compress.py)
                ─► summary.json, and the checkpoint goes

Each finished stage is recorded in progress.json, so `tailor train --resume` knows where the
run stopped: inside training it continues from the checkpoint; after training it restores the
final checkpoint and goes on with the stages after it.

Under torchrun (`tailor train --nproc N`) every process runs this file: rank 0 claims the run
directory and writes recipe.yaml, the others read it back from there (one resolved recipe);
all prepare and train, and rank 0 alone writes the model, the test outputs and the summary.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tailorkit.compress.measure import weights_mb
from tailorkit.config.recipe import Recipe
from tailorkit.device import peak_memory_mb, resolve
from tailorkit.errors import TailorError
from tailorkit.evaluate.baseline import baseline, shortfalls
from tailorkit.models.quantize import linear_weight_bytes
from tailorkit.pipeline.compress import Compress
from tailorkit.pipeline.load import run_recipe
from tailorkit.pipeline.run_dir import (
    MODEL,
    PROGRESS,
    SUMMARY,
    claim_run_dir,
    write_json_atomically,
)
from tailorkit.pipeline.stages import Evaluate, Prepare, Run, Save, Stage, Train
from tailorkit.recipe import dump_recipe, resolve_defaults
from tailorkit.runtime import allocator, bound_onednn_cache, default_threads, peak_rss_mb, versions
from tailorkit.tasks import task_of
from tailorkit.track.jsonl import METRICS
from tailorkit.track.trackers import check_installed
from tailorkit.train import distributed
from tailorkit.train.checkpoint import find_checkpoint, remove_checkpoints
from tailorkit.train.loop import throughput

STAGES: list[Stage] = [Prepare(), Train(), Save(), Evaluate(), Compress()]


def train(recipe: Recipe, overwrite: bool = False,
          on_evaluate: Callable[[int, dict], None] | None = None) -> Path:
    """Run a recipe; `on_evaluate(step, metrics)` is called after each validation (a search
    trial reports there, and may raise to stop the run)."""
    w = distributed.init(resolve(recipe.train.device))
    if not w.main:  # rank 0 claims the directory and resolves the recipe; the rest follow it
        distributed.barrier()
        run_dir = Path(recipe.output_dir)
        recipe = run_recipe(run_dir)
        return _run(Run(recipe, run_dir, task_of(recipe), on_evaluate=on_evaluate))
    check_installed(recipe.train.report_to)  # before anything is written or loaded
    made = _first_missing(Path(recipe.output_dir))  # the folders claiming it creates start here
    run_dir = claim_run_dir(Path(recipe.output_dir), overwrite)
    recipe = resolve_defaults(recipe)  # a Recipe built in Python, not read by recipe_from_dict
    if recipe.train.threads is None:  # recorded, so a resume computes with the same threads
        # the free cores, shared by the processes of this machine
        threads = recipe.train.model_copy(update={"threads": max(1, default_threads() // w.local_size)})
        recipe = recipe.model_copy(update={"train": threads})
    (run_dir / "recipe.yaml").write_text(dump_recipe(recipe))
    distributed.barrier()
    try:
        return _run(Run(recipe, run_dir, task_of(recipe), on_evaluate=on_evaluate))
    except BaseException:
        # Stopped or failed before training started (bad input, Ctrl-C while the model
        # loads): nothing could be resumed, so leave nothing behind that would block the
        # corrected command.
        started_training = any((run_dir / name).exists() for name in (METRICS, PROGRESS))
        if not started_training and find_checkpoint(run_dir) is None:
            _remove_made(run_dir, made) if made is not None else _empty(run_dir)
        raise


def _first_missing(path: Path) -> Path | None:
    """The topmost of `path` and its parents that does not exist yet."""
    missing = None
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing = folder
    return missing


def _remove_made(run_dir: Path, top: Path) -> None:
    """The run folder, and the parents claiming it made (up to `top`) while they stay empty."""
    shutil.rmtree(run_dir)
    folder = run_dir.parent
    while folder != top.parent and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def _empty(folder: Path) -> None:
    for path in folder.iterdir():
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def resume(run_dir: str | Path, allow_data_change: bool = False) -> Path:
    """Continue a stopped run; refused when its data now reads differently, unless
    `allow_data_change`."""
    run_dir = Path(run_dir)
    if (run_dir / SUMMARY).exists():
        raise TailorError(f"{run_dir}: this run already finished; nothing to resume")
    if find_checkpoint(run_dir) is None and not (run_dir / PROGRESS).is_file():
        raise TailorError(f"{run_dir}: no checkpoint found; start the run again with tailor train")
    recipe = _device_here(run_recipe(run_dir))
    distributed.init(resolve(recipe.train.device))
    recorded = _progress(run_dir).get("data") if not allow_data_change else None
    return _run(Run(recipe, run_dir, task_of(recipe), resume=True, recorded_data=recorded))


def _device_here(recipe: Recipe) -> Recipe:
    """A run resumes on whatever this machine has: the checkpoint holds no device, so a run
    started on a GPU continues on a CPU (`auto`'s pick), with a warning."""
    try:
        resolve(recipe.train.device)
        return recipe
    except TailorError:
        here = resolve("auto")
        if distributed.world().main:
            print(f"warning: the run trained on train.device: {recipe.train.device}, which is not here; "
                  f"resuming on {here}", file=sys.stderr)
        return recipe.model_copy(update={"train": recipe.train.model_copy(update={"device": "auto"})})


def _run(run: Run) -> Path:
    started = time.time()
    recipe, run_dir = run.recipe, run.run_dir
    threads = recipe.train.threads or default_threads()  # older runs' recipe.yaml may lack it
    torch.set_num_threads(threads)
    bound_onednn_cache(recipe.train.bf16, run.task.modality)
    main = distributed.world().main
    if not main:
        run.scratch_dir = Path(tempfile.mkdtemp(prefix="tailor-rank-"))
    done = _progress(run_dir).get("finished", []) if run.resume else []
    ok = False
    try:
        for stage in STAGES:
            if not stage.enabled(recipe) or (stage.skip_when_done and stage.name in done):
                continue
            if not main and not stage.all_processes:
                continue
            stage.run(run)
            done = [*dict.fromkeys([*done, stage.name])]
            if main:
                write_json_atomically(run_dir / PROGRESS, {"finished": done, "data": run.setup.fingerprint})
        ok = True
    finally:
        if run.scratch_dir is not None:
            shutil.rmtree(run.scratch_dir, ignore_errors=True)
        if not ok:
            _close_trackers(run, None)  # a stopped or failed run: trackers close it, no artefacts
    if not main:
        _close_trackers(run, None)
        return run_dir
    write_json_atomically(run_dir / SUMMARY, _summary(run, threads, started))
    _close_trackers(run, run_dir)  # after summary.json, which the trackers keep as an artefact
    remove_checkpoints(run_dir)  # the final model supersedes them
    (run_dir / PROGRESS).unlink(missing_ok=True)
    return run_dir


def _close_trackers(run: Run, artefacts: Path | None) -> None:
    """Trackers (train.report_to) mark their runs finished; given the run directory, they keep
    its summary, recipe and report as artefacts first."""
    if getattr(run, "trainer", None) is not None and hasattr(run.trainer.sink, "close"):
        run.trainer.sink.close(artefacts)


def _progress(run_dir: Path) -> dict:
    """The finished stages, and the fingerprint of each data split the run read."""
    path = run_dir / PROGRESS
    return json.loads(path.read_text()) if path.is_file() else {}


def _summary(run: Run, threads: int, started: float) -> dict:
    recipe, s, trainer, state = run.recipe, run.setup, run.trainer, run.state
    trainable, total = run.parameters
    trivial = None
    if getattr(s.splits["train"], "targets", None) is not None and s.test_targets is not None:
        trivial = baseline(s.handle.output, s.splits["train"].targets,
                           {"validation": s.splits["validation"].targets, "test": s.test_targets}, s.labels)
    return {
        "task": recipe.task,
        "model": recipe.model.name,
        "methods": [spec.model_dump(mode="json") for spec in recipe.methods],
        "labels": s.labels,
        "data": {name: len(split) for name, split in s.splits.items()},
        **s.info,
        "test": run.test,
        "validation": trainer.last_val,
        "baseline": trivial,  # the trivial predictor's scores, to read the two above against
        "warnings": shortfalls(s.handle.output, run.test, trivial, recipe.train.lr, recipe.train.loss),
        "parameters": {"trainable": trainable, "total": total,
                       "trainable_pct": round(100 * trainable / total, 4)},
        "artefact_mb": weights_mb(run.run_dir / MODEL),
        "quantize_base": recipe.model.quantize_base,
        "base_linear_weight_mb": round(linear_weight_bytes(s.handle.model) / 2**20, 3),
        "steps": state.step,
        "epochs": round(state.epoch + state.batch / max(1, trainer.steps_per_epoch), 3),
        "stopped_early": state.stopped_early,
        "skipped_steps": state.skipped_steps,
        "frozen_prefix": trainer.prefix_report,
        "train_seconds": round(state.train_seconds, 2),
        "wall_seconds": round(time.time() - started, 2),
        "samples_per_second": throughput(state),
        "peak_rss_mb": round(peak_rss_mb(), 1),  # of rank 0's process
        "allocator": allocator(),  # the peak depends on it (tailorkit/launch.py)
        "memory_estimate": run.memory.as_dict() if run.memory else None,  # made before training
        "peak_memory": peak_memory_mb(s.handle.device),  # on CUDA: peak allocated and reserved
        "threads": threads,
        "precision": recipe.train.precision,
        "bf16": recipe.train.bf16,
        "device": str(s.handle.device),
        "processes": distributed.world().size,
        "effective_batch_size": recipe.train.batch_size * recipe.train.grad_accum,
        "resumed": run.resume,
        "versions": versions(),
    }
