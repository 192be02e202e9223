"""What differs between tasks: the data, the base model, the loss and the test outputs.

`setup` builds everything a run trains on; `write_test_outputs` scores the test split and
writes the task's own files (predictions for classifiers, sample generations for LMs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tailorkit.data.batching import EncodedSplit
from tailorkit.data.chat import prepare_chat_data
from tailorkit.data.image_data import EncodedImages, prepare_image_data
from tailorkit.data.image_transforms import ImageTransform
from tailorkit.data.instructions import Conversation
from tailorkit.data.mlm import EncodedMLM
from tailorkit.data.prepare import (
    carve_missing_splits,
    check_columns,
    column_texts,
    prepare_data,
    read_splits,
    subset,
)
from tailorkit.data.templates import resolve_template
from tailorkit.evaluate.evaluator import evaluate_split, predict_logits, prediction_frame, score
from tailorkit.generate import sample_answers
from tailorkit.methods import Method, apply_methods
from tailorkit.models.handle import ModelHandle, load_causal_lm, load_masked_lm, load_text_classifier
from tailorkit.models.quantize import nf4_config
from tailorkit.models.vision import load_image_classifier
from tailorkit.recipe import Recipe
from tailorkit.sources import resolve_model
from tailorkit.train.loop import seed_everything
from tailorkit.train.losses import TaskLoss, class_weights

GENERATIONS = "generations.jsonl"
BEFORE = "generations_before.json"  # written at the start, so a resumed run keeps them


@dataclass
class Setup:
    handle: ModelHandle
    methods: list[Method]
    splits: dict  # name -> EncodedSplit | EncodedChat | EncodedMLM
    labels: list[str]
    loss_fn: TaskLoss
    test_texts: list[str] = field(default_factory=list)  # classifiers: for predictions_test.csv
    test_targets: object = None
    prompts: list[Conversation] = field(default_factory=list)  # LMs: fixed validation prompts
    info: dict = field(default_factory=dict)  # task facts for summary.json


def build_base(recipe: Recipe, labels: list[str]) -> ModelHandle:
    seed_everything(recipe.seed)  # a new head's initial weights depend on it
    if recipe.task == "image_classification":
        return load_image_classifier(recipe.model.name, len(labels), recipe.model.pretrained)
    path = resolve_model(recipe.model.name)
    quantization = nf4_config(recipe.train.bf16) if recipe.model.quantize_base == "nf4" else None
    if recipe.task == "causal_lm":
        return load_causal_lm(path, recipe.model.trust_remote_code, quantization)
    if recipe.task == "mlm":
        return load_masked_lm(path, recipe.model.trust_remote_code)
    return load_text_classifier(path, recipe.task, labels, recipe.model.trust_remote_code, quantization)


def setup(recipe: Recipe, run_dir: Path) -> Setup:
    if recipe.task == "causal_lm":
        return _setup_causal_lm(recipe, run_dir)
    if recipe.task == "mlm":
        return _setup_mlm(recipe)
    if recipe.task == "image_classification":
        return _setup_images(recipe)
    data = prepare_data(recipe.data, recipe.task)
    handle = build_base(recipe, data.labels)
    methods = apply_methods(handle, recipe.methods)
    splits = {name: EncodedSplit(split, handle.tokenizer, recipe.model.max_length)
              for name, split in data.splits.items()}
    weights = (class_weights(data.splits["train"].targets, data.num_labels, recipe.train.class_weights)
               if recipe.task == "classification" else None)
    test = data.splits["test"]
    return Setup(handle, methods, splits, data.labels, TaskLoss(recipe.task, recipe.train, weights),
                 test_texts=test.texts, test_targets=test.targets)


def _setup_causal_lm(recipe: Recipe, run_dir: Path) -> Setup:
    handle = build_base(recipe, [])
    tokenizer = handle.tokenizer
    if recipe.data.template is not None:  # saved with the model, so inference formats alike
        tokenizer.chat_template = resolve_template(tokenizer, recipe.data.template)
    data = prepare_chat_data(recipe.data, tokenizer, recipe.model.max_length)
    g = recipe.generation
    prompts = data.conversations["validation"][: g.samples]
    before = run_dir / BEFORE
    if prompts and not before.exists():  # the base model's answers, for the before/after table
        answers = sample_answers(handle, prompts, g.max_new_tokens, g.temperature, g.top_p, recipe.seed)
        before.write_text(json.dumps(answers))
    seed_everything(recipe.seed)  # methods start from the same RNG state with or without samples
    methods = apply_methods(handle, recipe.methods)
    return Setup(handle, methods, data.splits, [], TaskLoss("causal_lm", recipe.train, None),
                 prompts=prompts, info={"format": data.format, "truncated": data.truncated})


def _setup_images(recipe: Recipe) -> Setup:
    images, classes, skipped = prepare_image_data(recipe.data)
    handle = build_base(recipe, classes)
    methods = apply_methods(handle, recipe.methods)
    transform = {name: ImageTransform(recipe.data.image, train=name == "train") for name in images}
    splits = {name: EncodedImages(split, transform[name]) for name, split in images.items()}
    test = images["test"]
    weights = class_weights(images["train"].labels, len(classes), recipe.train.class_weights)
    return Setup(handle, methods, splits, classes, TaskLoss("classification", recipe.train, weights),
                 test_texts=[test.name_of(i) for i in range(len(test))], test_targets=test.labels,
                 info={"skipped_images": skipped})


def _setup_mlm(recipe: Recipe) -> Setup:
    """Raw text only: the text column of each split, masked on the fly."""
    cfg = recipe.data
    raw = carve_missing_splits(read_splits(cfg), cfg, stratify=None)
    handle = build_base(recipe, [])
    methods = apply_methods(handle, recipe.methods)
    splits = {}
    for name, (source, frame) in raw.items():
        check_columns(source, frame, cfg, needs_label=False)
        frame = subset(frame, cfg.max_train_samples if name == "train" else cfg.max_eval_samples,
                       cfg.split.seed)
        fixed = None if name == "train" else recipe.seed  # evaluation masks stay put
        splits[name] = EncodedMLM(column_texts(source, frame, cfg.text_column), handle.tokenizer,
                                  recipe.model.max_length, cfg.mlm_probability, fixed)
    return Setup(handle, methods, splits, [], TaskLoss("mlm", recipe.train, None))


def write_test_outputs(s: Setup, recipe: Recipe, run_dir: Path) -> dict:
    """Test metrics; also writes predictions_test.csv or generations.jsonl."""
    t = recipe.train
    if recipe.task in ("causal_lm", "mlm"):
        metrics = evaluate_split(s.handle, s.splits["test"], [], s.loss_fn, t.eval_batch_size, t.bf16)
        _write_generations(s, recipe, run_dir)
        return metrics
    logits = predict_logits(s.handle, s.splits["test"], t.eval_batch_size, t.bf16)
    frame = prediction_frame(s.handle.task, s.test_texts, logits, s.labels, s.test_targets)
    if s.handle.modality == "image":
        frame = frame.rename(columns={"text": "image"})
    frame.to_csv(run_dir / "predictions_test.csv", index=False)
    return score(s.handle.task, logits, s.test_targets, s.labels, s.loss_fn)


def _write_generations(s: Setup, recipe: Recipe, run_dir: Path) -> None:
    if not s.prompts:
        return
    g = recipe.generation
    after = sample_answers(s.handle, s.prompts, g.max_new_tokens, g.temperature, g.top_p, recipe.seed)
    before_file = run_dir / BEFORE
    before = json.loads(before_file.read_text()) if before_file.exists() else [{}] * len(after)
    with (run_dir / GENERATIONS).open("w") as out:
        for prompt, old, new in zip(s.prompts, before, after, strict=True):
            reference = prompt[-1]["content"] if prompt[-1]["role"] == "assistant" else None
            out.write(json.dumps({"prompt": prompt[:-1] if reference else prompt, "reference": reference,
                                  "before": old, "after": new}) + "\n")
    before_file.unlink(missing_ok=True)

