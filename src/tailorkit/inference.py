"""Using a finished run: load it, predict, score another file, generate, merge an adapter."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tailorkit.compress import build_steps, order_problems
from tailorkit.config.compress import CompressConfig
from tailorkit.config.recipe import Recipe
from tailorkit.data.batching import EncodedSplit
from tailorkit.data.image_data import EncodedImages
from tailorkit.data.image_transforms import ImageTransform
from tailorkit.data.images import ImageSet, image_files, load_image_file, read_image
from tailorkit.data.prepare import SPLITS, Split, prepare_data
from tailorkit.data.tables import write_csv
from tailorkit.errors import TailorError
from tailorkit.evaluate.evaluator import predict_logits, prediction_frame, score
from tailorkit.methods import model_owner
from tailorkit.models.handle import ModelHandle
from tailorkit.pipeline.compress import compress_chain, plain_model
from tailorkit.pipeline.load import load_run, run_recipe
from tailorkit.pipeline.run_dir import SUMMARY, claim_run_dir, save_model_atomically
from tailorkit.recipe import dump_recipe, recipe_from_dict
from tailorkit.runtime import default_threads
from tailorkit.tasks import task_of
from tailorkit.train.losses import TaskLoss


def merge(run_dir: str | Path, out: str | Path, *, trust_remote_code: bool = False) -> Path:
    """Fold a run's adapter into its base and save a plain Hugging Face model, with a
    recipe.yaml beside it that makes the folder a run of that whole model (for predict, eval)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TailorError(f"--out {out} is a file; choose a new folder")
    if out.exists() and any(out.iterdir()):
        raise TailorError(f"--out {out} is not empty; choose a new folder")
    recipe, handle, labels, methods = load_run(run_dir, dequantize=True, trust_remote_code=trust_remote_code)
    owner = model_owner(methods)
    if owner is None:
        raise TailorError(f"{run_dir}: the run trained no adapter; its model/ folder is already a "
                          "plain Hugging Face model")
    if recipe.model.quantize_base != "none":
        print(f"{recipe.model.quantize_base} base: merging into its dequantised fp32 weights; "
              "the merged model is a normal fp32 model", file=sys.stderr)
    try:
        owner.merge(handle)
    except TailorError as err:
        raise TailorError(f"{run_dir}: {err}") from None
    save_model_atomically(handle, None, labels, out)
    (out / "recipe.yaml").write_text(merged_recipe(recipe, run_dir, out))
    return out


def merged_recipe(recipe: Recipe, run_dir: str | Path, out: Path) -> str:
    """The run's recipe for its merged model: a whole model (`methods: [full]`, full precision)
    whose files are the folder itself; data, train and generation settings as the run had them."""
    raw = recipe.model_dump(mode="json", exclude={"search", "compress"})
    raw["model"] |= {"name": str(out), "quantize_base": "none"}
    written = ", ".join(spec.name for spec in recipe.methods)
    text = dump_recipe(recipe_from_dict({**raw, "methods": ["full"], "output_dir": str(out)}))
    return f"# tailor merge {run_dir}: that run's model ({written}) as one plain model here\n{text}"


def check_output_file(output: str | Path, inputs: dict[str, str | None], force: bool,
                      flag: str = "--output") -> None:
    """The file of `flag` may replace an existing file only with `force`, and never one of the
    command's `inputs` (flag -> path): tailor does not write over a user's data."""
    out = Path(output)
    if out.is_dir() or not out.parent.is_dir():
        raise TailorError(f"{flag} {out}: name a file in an existing folder")
    if not out.exists():
        return
    for given, path in inputs.items():
        if path and Path(path).exists() and out.samefile(path):
            raise TailorError(f"{flag} must differ from {given}; tailor never overwrites your data, "
                              "not even with --force")
    if not force:
        raise TailorError(f"{flag} {out} already exists; choose another file, or pass --force to "
                          "replace it")


def evaluate(run_dir: str | Path, data_path: str, output: str | None = None, text_column: str | None = None,
             text_pair_column: str | None = None, label_column: str | None = None, *,
             image_column: str | None = None, force: bool = False, trust_remote_code: bool = False) -> dict:
    """Score a finished run on another labelled file: the recipe's columns, or those named here
    (`tailor eval --text-column ...`, which messages name). `output` gets the per-row
    predictions; an existing file is replaced only with `force`, and never `data_path`."""
    columns = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
    if output:
        check_output_file(output, {"--data": data_path}, force)
    saved = run_recipe(run_dir)
    if task_of(saved).modality == "image":
        if text_column or text_pair_column:
            raise TailorError(f"eval: {run_dir} is an image run; --text-column and --text-pair-column do "
                              "not apply (name a table's columns with --image-column and --label-column)")
        return _evaluate_images(run_dir, data_path, output, image_column, label_column, trust_remote_code)
    if image_column:
        raise TailorError(f"eval: {run_dir} is a {saved.task} run; --image-column is for image runs")
    check_text_predictions(saved, run_dir)
    if text_pair_column and not saved.data.text_pair_column:
        raise TailorError(f"eval: {run_dir} was not trained on text pairs; drop --text-pair-column")
    recipe, handle, labels, _ = load_run(run_dir, trust_remote_code=trust_remote_code)
    cfg = recipe.data.model_copy(update={"name": None, "train": data_path, "validation": data_path,
                                         "test": data_path, "max_eval_samples": None,
                                         "max_train_samples": None,
                                         **{option: name for option, name in columns.items() if name}})
    flags = {option: "--" + option.replace("_", "-") for option in columns} | dict.fromkeys(SPLITS, "--data")
    split = prepare_data(cfg, classes=handle.output == "classes", labels=labels or None,
                         flags=flags).splits["test"]
    encoded = EncodedSplit(split, handle.tokenizer, recipe.model.max_length)
    logits = predict_logits(handle, encoded, recipe.train.eval_batch_size, recipe.train.precision)
    metrics = score(handle.output, logits, split.targets, labels, TaskLoss(handle.output, recipe.train, None))
    if output:
        frame = prediction_frame(handle.output, split.texts, logits, labels, split.targets, split.pairs)
        write_csv(frame, output)
    return metrics


def _evaluate_images(run_dir: str | Path, data_path: str, output: str | None, image_column: str | None,
                     label_column: str | None, trust_remote_code: bool) -> dict:
    """An image run scored on labelled images in any form `data.train` takes: a folder of class
    folders, a table of paths and labels, a .npz file."""
    recipe, handle, labels, _ = load_run(run_dir, trust_remote_code=trust_remote_code)
    cfg = recipe.data
    images = load_image_file(data_path, image_column=image_column or cfg.image_column,
                             label_column=label_column or cfg.label_column, classes=labels,
                             skip_bad=cfg.skip_bad, field="--data",
                             flags={"image_column": "--image-column", "label_column": "--label-column"})
    if images.num_skipped:
        print(f"--data: skipped {images.num_skipped} unreadable images (first: {images.skipped[0]})",
              file=sys.stderr)
    data = EncodedImages(images, ImageTransform(cfg.image, train=False))
    logits = predict_logits(handle, data, recipe.train.eval_batch_size, recipe.train.precision)
    metrics = score(handle.output, logits, images.labels, labels, TaskLoss(handle.output, recipe.train, None))
    if output:
        names = [images.name_of(i) for i in range(len(images))]
        frame = prediction_frame(handle.output, names, logits, labels, images.labels)
        write_csv(frame.rename(columns={"text": "image"}), output)
    return metrics


def predict(run_dir: str | Path, texts: list[str], pairs: list[str] | None = None, *,
            trust_remote_code: bool = False) -> pd.DataFrame:
    """Predictions for `texts`; a run trained on text pairs needs `pairs`, one second text per text."""
    recipe = run_recipe(run_dir)
    check_text_predictions(recipe, run_dir)  # before the model is loaded
    check_pairs(recipe, texts, pairs)
    recipe, handle, labels, _ = load_run(run_dir, trust_remote_code=trust_remote_code)
    return predict_with(handle, recipe, labels, texts, pairs)


def check_text_predictions(recipe: Recipe, run_dir: str | Path) -> None:
    """Predictions and scores from texts are for tasks that predict a class or a value from one."""
    why = task_of(recipe).not_text_predictions
    if why:
        raise TailorError(f"{run_dir}: this {recipe.task} run {why}")


def check_pairs(recipe: Recipe, texts: list[str], pairs: list[str] | None) -> None:
    """A run trained on text pairs predicts from pairs only, and other runs from single texts."""
    column = recipe.data.text_pair_column
    if column and pairs is None:
        raise TailorError(f"predict: the run was trained on text pairs (data.text_pair_column: {column}); "
                          "give the second text of each pair (pairs=[...], one per text)")
    if pairs is not None and not column:
        raise TailorError("predict: the run was not trained on text pairs; give single texts (no pairs)")
    if pairs is not None and len(pairs) != len(texts):
        raise TailorError(f"predict: {len(texts)} texts but {len(pairs)} second texts; give one per text")


def predict_with(handle: ModelHandle, recipe: Recipe, labels: list[str], texts: list[str],
                 pairs: list[str] | None = None) -> pd.DataFrame:
    check_text_predictions(recipe, "predict")
    check_pairs(recipe, texts, pairs)
    if not texts:
        raise TailorError("predict: no texts to predict")
    if any(t is None or not str(t).strip() for t in [*texts, *(pairs or [])]):
        raise TailorError("predict: every input text must be non-empty")
    pairs = None if pairs is None else [str(p) for p in pairs]
    split = Split("input", list(texts), pairs, np.zeros(len(texts), dtype=np.int64))
    encoded = EncodedSplit(split, handle.tokenizer, recipe.model.max_length)
    logits = predict_logits(handle, encoded, recipe.train.eval_batch_size, recipe.train.precision)
    return prediction_frame(handle.output, list(texts), logits, labels, pairs=pairs)


def load_generator(run_dir: str | Path, *, trust_remote_code: bool = False) -> tuple[Recipe, ModelHandle]:
    """A finished causal-LM run (full or adapter) ready to generate, with its recipe (the
    generation defaults)."""
    recipe, handle, _, _ = load_run(run_dir, trust_remote_code=trust_remote_code)
    if handle.output != "next_token":
        raise TailorError(f"{run_dir}: this {recipe.task} run cannot generate text; train a causal LM "
                          "(task: causal_lm)")
    return recipe, handle


def predict_images(run_dir: str | Path, paths: list[str], *, trust_remote_code: bool = False) -> pd.DataFrame:
    """Classify image files (a folder stands for the images in it) with an image run."""
    recipe, handle, labels, _ = load_run(run_dir, trust_remote_code=trust_remote_code)
    if handle.modality != "image":
        raise TailorError(f"{run_dir}: this {recipe.task} run does not classify images; use --text")
    files = [f for p in paths for f in (image_files(Path(p)) if Path(p).is_dir() else [Path(p)])]
    if not files:
        raise TailorError(f"--image: no image files in {', '.join(paths)}")
    images = []
    for file in files:
        try:
            images.append(read_image(file))
        except Exception as err:  # BadImage or a missing file: name it
            raise TailorError(f"--image {file}: {err}") from None
    return predict_images_with(handle, recipe, labels, images, [str(f) for f in files])


def predict_images_with(handle: ModelHandle, recipe: Recipe, labels: list[str], images: list[np.ndarray],
                        names: list[str]) -> pd.DataFrame:
    """Decoded images (uint8 H x W x C) through the run's own eval transform and model."""
    data = EncodedImages(ImageSet("images", images, np.zeros(len(images), dtype=np.int64), labels, names),
                         ImageTransform(recipe.data.image, train=False))
    logits = predict_logits(handle, data, recipe.train.eval_batch_size, recipe.train.precision)
    return prediction_frame(handle.output, names, logits, labels).rename(columns={"text": "image"})


def compress_run(run_dir: str | Path, cfg: CompressConfig, overwrite: bool = False, *,
                 trust_remote_code: bool = False) -> list[Path]:
    """`tailor compress RUN_DIR compress.yaml`: the finished run's model through the steps, one
    new run directory per step; the run itself is only read."""
    run_dir = Path(run_dir)
    recipe, handle, labels, methods = load_run(run_dir, dequantize=True, trust_remote_code=trust_remote_code)
    if recipe.compress is not None:
        raise TailorError(f"{run_dir}: already a compressed run; compress its source run with all the steps")
    task = task_of(recipe)
    steps = build_steps(cfg.steps)
    for i, step in enumerate(steps):
        try:
            step.check_recipe(recipe, task, f"steps[{i}]")
        except ValueError as err:
            raise TailorError(f"compress: {err}") from None
    order = order_problems(steps, "steps")
    if order:
        raise TailorError(f"compress: {order[0]}")
    handle = plain_model(handle, methods, run_dir)
    torch.set_num_threads(cfg.threads or recipe.train.threads or default_threads())
    out_root = claim_run_dir(Path(cfg.output_dir or f"{run_dir}-compressed"), overwrite)
    quiet = recipe.model_copy(update={"generation": recipe.generation.model_copy(update={"samples": 0})})
    with tempfile.TemporaryDirectory() as scratch:
        setup = task.prepare(quiet, Path(scratch), augment=False)  # the test split, as the run read it
    setup.labels = labels
    source_test = json.loads((run_dir / SUMMARY).read_text())["test"]
    return compress_chain(recipe, task, handle, setup, cfg, run_dir, source_test, out_root)
