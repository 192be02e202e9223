"""The Python API. Every `tailor` command is a thin call into these functions.

A run directory holds:
  recipe.yaml        the resolved recipe (what `--resume` re-reads)
  metrics.jsonl      one record per step and per evaluation
  checkpoint/        the resumable state while the run is unfinished
  model/             the final model in Hugging Face format (+ tokenizer); for an adapter
                     method, an adapter folder (adapter_config.json + adapter_model.safetensors)
                     plus the tokenizer and labels.json; for `features`, the head only
                     (head.safetensors or head.skops + features.json): the backbone is the base
  predictions_test.csv (classifiers) or generations.jsonl (causal LMs), summary.json
                     written when the run finishes
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tailorkit import tasks
from tailorkit.data.batching import EncodedSplit
from tailorkit.data.prepare import Split, prepare_data
from tailorkit.errors import TailorError
from tailorkit.evaluate.evaluator import predict_logits, prediction_frame, scalar_metrics, score
from tailorkit.methods import Method, adapter_method, apply_methods
from tailorkit.models.feature_model import SPEC_FILE, FeatureModel, load_feature_handle
from tailorkit.models.handle import ModelHandle, handle_for, load_causal_lm, load_masked_lm
from tailorkit.models.quantize import dequantize_in_place, linear_weight_bytes
from tailorkit.models.vision import load_hf_image_classifier, load_saved, vision_handle
from tailorkit.recipe import Recipe, dump_recipe, load_recipe
from tailorkit.train.checkpoint import find_checkpoint
from tailorkit.train.loop import throughput
from tailorkit.train.losses import TaskLoss

SUMMARY = "summary.json"
LABELS = "labels.json"  # the class names; adapter folders and CNNs have no config to hold them


def default_threads() -> int:
    """Cores not busy right now: with the other core loaded, 2 threads ran slower than 1.

    Busy is measured over a quarter second from /proc/stat; the load average would still
    count a run that ended a minute ago and starve the next one."""
    cores = len(os.sched_getaffinity(0))
    busy = _busy_cores(0.25)
    if busy is None:
        busy = os.getloadavg()[0]
    return max(1, min(cores, round(cores - busy)))


def _busy_cores(seconds: float) -> float | None:
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 == total0:
        return None
    return os.cpu_count() * (busy1 - busy0) / (total1 - total0)


ONEDNN_CACHE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"


def bound_onednn_cache(recipe: Recipe) -> None:
    """Keep oneDNN's primitive cache small for bf16 text training.

    bf16 matmuls on CPU run through oneDNN, which caches one primitive per shape (1024 by
    default). Length-grouped batches come in dozens of widths, and for LoRA on tweets the cache
    held about 400 MB; 32 entries ran as fast (bench/RESULTS.md). Image models keep the default
    (not measured: a CNN's many fixed conv shapes could overflow a small cache). oneDNN reads
    the variable when it makes its first primitive, so this only acts before the process's
    first bf16 op, and a value the user set wins."""
    if recipe.train.bf16 and recipe.task != "image_classification":
        os.environ.setdefault(ONEDNN_CACHE, "32")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _claim_run_dir(path: Path, overwrite: bool) -> Path:
    """Refuse to mix runs. With --overwrite the old run is moved aside, never deleted."""
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            what = ("a finished run" if (path / SUMMARY).exists() else
                    "an unfinished run; continue it with `tailor train --resume " + str(path) + "`"
                    if find_checkpoint(path) else "files")
            raise TailorError(
                f"output_dir {path} already holds {what}; choose another output_dir or pass "
                "--overwrite (the old one is moved to a .bak folder, not deleted)"
            )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup, n = path.with_name(f"{path.name}.bak-{stamp}"), 1
        while backup.exists():  # two overwrites within a second
            backup, n = path.with_name(f"{path.name}.bak-{stamp}-{n}"), n + 1
        path.rename(backup)
        print(f"moved the previous run to {backup}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def train(recipe: Recipe, overwrite: bool = False,
          on_evaluate: Callable[[int, dict], None] | None = None) -> Path:
    """Run a recipe; `on_evaluate(step, metrics)` is called after each validation (a search
    trial reports there, and may raise to stop the run)."""
    created = not Path(recipe.output_dir).exists()
    run_dir = _claim_run_dir(Path(recipe.output_dir), overwrite)
    (run_dir / "recipe.yaml").write_text(dump_recipe(recipe))
    try:
        return _run(recipe, run_dir, resume=False, on_evaluate=on_evaluate)
    except TailorError:
        # Bad input caught before training wrote anything: leave no half run behind that
        # would block the corrected command.
        if [p.name for p in run_dir.iterdir()] == ["recipe.yaml"]:
            (run_dir / "recipe.yaml").unlink()
            if created:
                run_dir.rmdir()
        raise


def resume(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if (run_dir / SUMMARY).exists():
        raise TailorError(f"{run_dir}: this run already finished; nothing to resume")
    if find_checkpoint(run_dir) is None:
        raise TailorError(f"{run_dir}: no checkpoint found; start the run again with tailor train")
    return _run(load_recipe(run_dir / "recipe.yaml"), run_dir, resume=True)


def _run(recipe: Recipe, run_dir: Path, resume: bool,
         on_evaluate: Callable[[int, dict], None] | None = None) -> Path:
    started = time.time()
    threads = recipe.train.threads or default_threads()
    torch.set_num_threads(threads)
    bound_onednn_cache(recipe)
    s = tasks.setup(recipe, run_dir)
    trainer = tasks.make_trainer(s, recipe, run_dir)
    trainer.on_evaluate = on_evaluate
    fit_started = time.perf_counter()
    state = trainer.fit(resume=resume)
    if "features" in s.info:  # the head's training (with its validation passes) over the cache
        s.info["features"]["head_seconds"] = round(time.perf_counter() - fit_started, 2)
    trainable, total = trainer.trained_parameter_count()

    _save_model_atomically(s.handle, s.methods, s.labels, run_dir / "model")
    test_metrics = tasks.write_test_outputs(s, recipe, run_dir)
    trainer.sink.log("eval", state.step, {"split": "test", **scalar_metrics(test_metrics)})
    summary = {
        "task": recipe.task,
        "model": recipe.model.name,
        "methods": recipe.methods,
        "labels": s.labels,
        "data": {name: len(split) for name, split in s.splits.items()},
        **s.info,
        "test": test_metrics,
        "validation": trainer.last_val,
        "parameters": {"trainable": trainable, "total": total,
                       "trainable_pct": round(100 * trainable / total, 4)},
        "artefact_mb": round(_folder_mb(run_dir / "model"), 3),
        "quantize_base": recipe.model.quantize_base,
        "base_linear_weight_mb": round(linear_weight_bytes(s.handle.model) / 2**20, 3),
        "steps": state.step,
        "epochs": round(state.epoch + state.batch / max(1, trainer.steps_per_epoch), 3),
        "stopped_early": state.stopped_early,
        "frozen_prefix": trainer.prefix_report,
        "train_seconds": round(state.train_seconds, 2),
        "wall_seconds": round(time.time() - started, 2),
        "samples_per_second": throughput(state),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "threads": threads,
        "bf16": recipe.train.bf16,
        "resumed": resume,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": _version("transformers")},
    }
    _write_json_atomically(run_dir / SUMMARY, summary)
    shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)  # the final model supersedes it
    return run_dir


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _folder_mb(folder: Path) -> float:
    """Weights on disk (the tokenizer files are the same for every method)."""
    weights = [f for f in folder.iterdir() if f.suffix in (".safetensors", ".bin", ".skops")]
    return sum(f.stat().st_size for f in weights) / 2**20


def _save_model_atomically(handle: ModelHandle, methods: list[Method], labels: list[str],
                           target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    adapter = adapter_method(methods)
    if isinstance(handle.model, FeatureModel):  # the head only: the backbone is the recipe's base
        handle.model.save_head(tmp)
    elif adapter is None:
        handle.save(tmp)
    else:
        adapter.save_adapter(handle, tmp)
        if handle.tokenizer is not None:
            handle.tokenizer.save_pretrained(tmp)
    (tmp / LABELS).write_text(json.dumps(labels))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def _write_json_atomically(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    tmp.replace(path)


# -- using a finished run --------------------------------------------------------------------

def load_run(run_dir: str | Path, dequantize: bool = False
             ) -> tuple[Recipe, ModelHandle, list[str], list[Method]]:
    """The finished model, ready for inference; for adapter runs, base + methods + adapter.

    `dequantize` turns a 4-bit (QLoRA) base into fp32 layers holding its dequantised weights,
    so a merge gives a plain model that computes what the QLoRA model computes."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    run_dir = Path(run_dir)
    model_dir = run_dir / "model"
    if not (run_dir / "recipe.yaml").is_file():
        raise TailorError(f"{run_dir}: not a tailorkit run directory (no recipe.yaml)")
    if not model_dir.is_dir():
        raise TailorError(f"{run_dir}: the run has no final model yet; finish it with "
                          f"`tailor train --resume {run_dir}`")
    recipe = load_recipe(run_dir / "recipe.yaml")
    trust = recipe.model.trust_remote_code
    labels = json.loads((model_dir / LABELS).read_text()) if (model_dir / LABELS).is_file() else []
    if (model_dir / "adapter_config.json").is_file():  # base + the same methods + adapter
        handle = tasks.build_base(recipe, labels)
        methods = apply_methods(handle, recipe.methods)  # re-derives a 4-bit base the same way
        adapter_method(methods).load_adapter(handle, model_dir)
        if dequantize:
            dequantize_in_place(handle.model)
    elif (model_dir / SPEC_FILE).is_file():  # feature extraction: the base's backbone + the head
        handle, methods = load_feature_handle(tasks.build_base(recipe, labels), model_dir), []
    elif recipe.task == "causal_lm":
        handle, methods = load_causal_lm(model_dir, trust), []
    elif recipe.task == "mlm":
        handle, methods = load_masked_lm(model_dir, trust), []
    elif recipe.task == "image_classification" and (model_dir / "config.json").is_file():
        handle, methods = load_hf_image_classifier(model_dir, len(labels), trust), []
    elif recipe.task == "image_classification":
        handle, methods = vision_handle(load_saved(model_dir)), []
    else:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=trust)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust)
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)] \
            if recipe.task == "classification" else []
        handle, methods = handle_for(model, tokenizer, recipe.task), []
    handle.model.eval()
    return recipe, handle, labels, methods


def merge(run_dir: str | Path, out: str | Path) -> Path:
    """Fold a run's adapter into its base and save a plain Hugging Face model."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise TailorError(f"--out {out} is not empty; choose a new folder")
    recipe, handle, labels, methods = load_run(run_dir, dequantize=True)
    if recipe.model.quantize_base != "none":
        print(f"{recipe.model.quantize_base} base: merging into its dequantised fp32 weights; "
              "the merged model is a normal fp32 model", file=sys.stderr)
    adapter = adapter_method(methods)
    if isinstance(handle.model, FeatureModel):
        raise TailorError(f"{run_dir}: a features run keeps a separate head on the unchanged base; "
                          "there is nothing to merge (predict with the run directory)")
    if adapter is None:
        raise TailorError(f"{run_dir}: the run trained no adapter; its model/ folder is already a "
                          "plain Hugging Face model")
    adapter.merge(handle)
    _save_model_atomically(handle, [], labels, out)
    return out


def evaluate(run_dir: str | Path, data_path: str, output: str | None = None) -> dict:
    """Score a finished run on another labelled file (same columns as the recipe's data)."""
    recipe, handle, labels, _ = load_run(run_dir)
    cfg = recipe.data.model_copy(update={"name": None, "train": data_path, "validation": data_path,
                                         "test": data_path, "max_eval_samples": None,
                                         "max_train_samples": None})
    split = prepare_data(cfg, recipe.task, labels=labels or None).splits["test"]
    encoded = EncodedSplit(split, handle.tokenizer, recipe.model.max_length)
    logits = predict_logits(handle, encoded, recipe.train.eval_batch_size, recipe.train.bf16)
    metrics = score(recipe.task, logits, split.targets, labels, TaskLoss(recipe.task, recipe.train, None))
    if output:
        prediction_frame(recipe.task, split.texts, logits, labels, split.targets).to_csv(
            output, index=False)
    return metrics


def predict(run_dir: str | Path, texts: list[str], pairs: list[str] | None = None) -> pd.DataFrame:
    recipe, handle, labels, _ = load_run(run_dir)
    return predict_with(handle, recipe, labels, texts, pairs)


def predict_with(handle: ModelHandle, recipe: Recipe, labels: list[str], texts: list[str],
                 pairs: list[str] | None = None) -> pd.DataFrame:
    if not texts or any(not str(t).strip() for t in texts):
        raise TailorError("predict: every input text must be non-empty")
    split = Split("input", list(texts), pairs, np.zeros(len(texts), dtype=np.int64))
    encoded = EncodedSplit(split, handle.tokenizer, recipe.model.max_length)
    logits = predict_logits(handle, encoded, recipe.train.eval_batch_size, recipe.train.bf16)
    return prediction_frame(recipe.task, list(texts), logits, labels)


def load_generator(run_dir: str | Path) -> ModelHandle:
    """A finished causal-LM run (full, adapter or merged folder) ready to generate."""
    recipe, handle, _, _ = load_run(run_dir)
    if recipe.task != "causal_lm":
        raise TailorError(f"{run_dir}: a {recipe.task} run cannot generate text; train with task: causal_lm")
    return handle


def predict_images(run_dir: str | Path, paths: list[str]) -> pd.DataFrame:
    """Classify image files (a folder stands for the images in it) with an image run."""
    from tailorkit.data.image_data import EncodedImages
    from tailorkit.data.image_transforms import ImageTransform
    from tailorkit.data.images import ImageSet, image_files, read_image

    recipe, handle, labels, _ = load_run(run_dir)
    if recipe.task != "image_classification":
        raise TailorError(f"{run_dir}: a {recipe.task} run does not classify images; use --text")
    files = [f for p in paths for f in (image_files(Path(p)) if Path(p).is_dir() else [Path(p)])]
    if not files:
        raise TailorError(f"--image: no image files in {', '.join(paths)}")
    images = []
    for file in files:
        try:
            images.append(read_image(file))
        except Exception as err:  # BadImage or a missing file: name it
            raise TailorError(f"--image {file}: {err}") from None
    names = [str(f) for f in files]
    data = EncodedImages(ImageSet("--image", images, np.zeros(len(images), dtype=np.int64), labels, names),
                         ImageTransform(recipe.data.image, train=False))
    logits = predict_logits(handle, data, recipe.train.eval_batch_size, recipe.train.bf16)
    return prediction_frame("classification", names, logits, labels).rename(columns={"text": "image"})


# -- hyperparameter search -------------------------------------------------------------------

def tune(recipe: Recipe, workers: int = 1) -> Path:
    """Run (or resume) the recipe's `search:` on Optuna in `output_dir`; returns the study
    directory with its trials, report and best recipe."""
    from tailorkit.search import report, study, worker

    if recipe.search is None:
        raise TailorError("tune: the recipe has no search: block; add one (see the README's "
                          "Hyperparameter search) or run it with tailor train")
    if workers < 1:
        raise TailorError(f"--workers must be at least 1 (got {workers})")
    started = time.time()
    study_dir = study.claim_study_dir(recipe)
    study.open_study(recipe, study_dir, create=True)  # once, here, before workers race to it
    if recipe.search.cv_folds:
        from tailorkit.search.folds import fold_sections

        fold_sections(recipe, study_dir)  # written once, before any worker reads them
    deadline = started + recipe.search.timeout if recipe.search.timeout else None
    try:
        worker.run_workers(recipe, study_dir, workers, deadline)
    finally:  # also after Ctrl-C or an error: the report shows what is done so far
        report.write_report(recipe, study_dir, time.time() - started)
    return study_dir


def tune_status(study_dir: str | Path) -> str:
    """Progress of a study directory, from its storage: counts, best so far, running trials."""
    from tailorkit.search.report import status_text

    return status_text(study_dir)
