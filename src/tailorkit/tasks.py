"""What differs between tasks: the data, the base model, the loss and the test outputs.

`setup` builds everything a run trains on; `write_test_outputs` scores the test split and
writes the task's own files (predictions for classifiers, sample generations for LMs).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tailorkit.data.batching import EncodedSplit
from tailorkit.data.chat import prepare_chat_data
from tailorkit.data.feature_cache import EncodedFeatures, cache_key, cached_features, files_identity
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
from tailorkit.methods import METHODS, Method, apply_methods, build_method
from tailorkit.models.feature_model import FeatureModel, feature_dim, feature_handle
from tailorkit.models.handle import ModelHandle, load_causal_lm, load_masked_lm, load_text_classifier
from tailorkit.models.quantize import NF4Spec, require_bitsandbytes
from tailorkit.models.sklearn_heads import ESTIMATORS, SklearnHead
from tailorkit.models.vision import load_image_classifier
from tailorkit.recipe import Recipe, TrainConfig
from tailorkit.sources import resolve_model
from tailorkit.train.fit_once import FitOnce
from tailorkit.train.loop import Trainer, seed_everything
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
    train: TrainConfig | None = None  # the loop's settings where they differ from the recipe's


def build_base(recipe: Recipe, labels: list[str]) -> ModelHandle:
    seed_everything(recipe.seed)  # a new head's initial weights depend on it
    if recipe.task == "image_classification":
        return load_image_classifier(recipe.model.name, len(labels), recipe.model.pretrained,
                                     recipe.model.trust_remote_code)
    m = recipe.model
    if m.quantize_base == "nf4":
        require_bitsandbytes()  # before minutes of loading
    path = resolve_model(m.name)
    if recipe.task == "mlm":
        return load_masked_lm(path, m.trust_remote_code)
    handle = (load_causal_lm(path, m.trust_remote_code) if recipe.task == "causal_lm" else
              load_text_classifier(path, recipe.task, labels, m.trust_remote_code))
    if m.quantize_base == "nf4":  # apply_methods quantises what stays frozen
        handle.nf4 = NF4Spec(m.nf4_block_size, torch.bfloat16 if recipe.train.bf16 else torch.float32)
    return handle


def setup(recipe: Recipe, run_dir: Path) -> Setup:
    if any(METHODS[name].feature_extraction for spec in recipe.methods for name in spec):
        return _setup_features(recipe)
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


def _setup_features(recipe: Recipe) -> Setup:
    """Frozen backbone -> pooled features for every split, once (or from the cache) -> a new head
    that trains on them. Images use the evaluation transform for every split: features computed
    once cannot be augmented."""
    ((name, cfg),) = recipe.methods[0].items()
    method = build_method(name, cfg, where="methods[0]")
    c = method.config
    base, raw, labels, test_texts, info, preprocessing = _feature_inputs(recipe)
    task = "regression" if recipe.task == "regression" else "classification"
    spec = {"head": c.head, "task": task, "feature_dim": feature_dim(base),
            "num_outputs": len(labels) if task == "classification" else 1,
            "hidden": c.hidden, "dropout": c.dropout, "standardize": c.standardize,
            "pooling": c.pooling if base.modality == "text" else "average"}
    handle = feature_handle(base, spec)
    if isinstance(handle.model.head, SklearnHead):
        handle.model.head.estimator = ESTIMATORS[c.head].build(task, c.options)
    method.apply(handle)
    identity = {"model": _model_identity(recipe), "modality": base.modality, "pooling": spec["pooling"],
                "preprocessing": preprocessing, "bf16": recipe.train.bf16}
    started, hits, splits = time.perf_counter(), {}, {}
    for split, encoded in raw.items():
        features, hits[split] = cached_features(handle.model, encoded, cache_key(identity, encoded),
                                                c.cache, recipe.train.eval_batch_size, recipe.train.bf16)
        splits[split] = EncodedFeatures(features, encoded.targets)
    handle.model.fit_scaling(splits["train"].features)
    info["features"] = {"head": c.head, "pooling": spec["pooling"], "dim": spec["feature_dim"],
                        "cache": c.cache, "from_cache": hits,
                        "extract_seconds": round(time.perf_counter() - started, 2)}
    weights = (class_weights(splits["train"].targets, len(labels), recipe.train.class_weights)
               if task == "classification" else None)
    head_train = recipe.train.model_copy(update={"epochs": c.head_epochs, "lr": c.head_lr or recipe.train.lr})
    return Setup(handle, [method], splits, labels, TaskLoss(task, recipe.train, weights),
                 test_texts=test_texts, test_targets=splits["test"].targets, info=info, train=head_train)


def _feature_inputs(recipe: Recipe):
    """The base model, the raw encoded splits, the labels, the test names, task facts and the
    preprocessing the features depend on."""
    if recipe.task == "image_classification":
        images, labels, skipped = prepare_image_data(recipe.data)
        evaluation = ImageTransform(recipe.data.image, train=False)
        raw = {split: EncodedImages(images[split], evaluation) for split in images}
        t = recipe.data.image
        return (build_base(recipe, labels), raw, labels,
                [images["test"].name_of(i) for i in range(len(images["test"]))],
                {"skipped_images": skipped},
                {"size": t.size, "resize": t.resize_to, "mean": t.mean, "std": t.std})
    data = prepare_data(recipe.data, recipe.task)
    base = build_base(recipe, data.labels)
    raw = {split: EncodedSplit(data.splits[split], base.tokenizer, recipe.model.max_length)
           for split in data.splits}
    return base, raw, data.labels, data.splits["test"].texts, {}, {"max_length": recipe.model.max_length}


def _model_identity(recipe: Recipe) -> dict:
    """What names the backbone's weights: its files, or the seed of a from-scratch image model."""
    m = recipe.model
    if recipe.task != "image_classification":
        return {"files": files_identity(resolve_model(m.name))}
    if not m.pretrained:
        return {"name": m.name, "pretrained": False, "seed": recipe.seed}
    path = Path(m.name).expanduser()
    if not path.exists():  # a catalogue name
        from tailorkit.sources import MODELS

        path = MODELS[m.name].path()
    return {"files": files_identity(path)}


def make_trainer(s: Setup, recipe: Recipe, run_dir: Path):
    """The loop for this setup: the Trainer, or one fit for a scikit-learn head."""
    cfg = s.train or recipe.train
    model = s.handle.model
    if isinstance(model, FeatureModel) and isinstance(model.head, SklearnHead):
        return FitOnce(s.handle, s.splits["train"], s.splits["validation"], cfg, s.loss_fn, s.labels,
                       run_dir, where="methods[0].features.options")
    return Trainer(s.handle, s.methods, s.splits["train"], s.splits["validation"], cfg, s.loss_fn,
                   s.labels, run_dir, recipe.seed)


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

