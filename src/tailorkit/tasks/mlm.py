"""Masked-LM domain adaptation of an encoder: raw text only, masked on the fly."""

from __future__ import annotations

import sys
from pathlib import Path

from tailorkit.config.metrics import LANGUAGE_MODEL_METRICS
from tailorkit.config.recipe import Recipe
from tailorkit.data.mlm import EncodedMLM
from tailorkit.data.prepare import carve_missing_splits, check_columns, column_texts, read_splits, subset
from tailorkit.data.quality import DATA_DIR, DataQuality, quality_info
from tailorkit.evaluate.evaluator import evaluate_split
from tailorkit.models.handle import ModelHandle, load_masked_lm
from tailorkit.sources import resolve_model
from tailorkit.tasks.base import CLEAN_LABEL_FIELDS, Task, register
from tailorkit.train.loop import seed_everything
from tailorkit.train.losses import TaskLoss
from tailorkit.train.setup import Setup


@register
class MaskedLM(Task):
    name = "mlm"
    summary = "masked-LM domain adaptation of an encoder (the text column only)"
    output = "masked_token"
    not_text_predictions = ("adapts an encoder: train a classification or regression recipe from "
                            "its model/ folder (model.name: RUN/model) and predict with that run")
    metrics = LANGUAGE_MODEL_METRICS
    headline = ["loss", "perplexity"]
    auto_class = "AutoModelForMaskedLM"
    frozen_base_ok = False
    reads = frozenset({"model.max_length", "data.text_column", "data.mlm_probability", "data.clean",
                       "data.augment"})
    ignores = {**{f"data.clean.{name}": "masked-LM text has no labels" for name in CLEAN_LABEL_FIELDS},
               **{f"data.augment.{name}": "masked-LM text has no classes"
                  for name in ("balance", "max_per_class")}}

    def build_base(self, recipe: Recipe, labels: list[str]) -> ModelHandle:
        seed_everything(recipe.seed)
        return load_masked_lm(resolve_model(recipe.model.name), recipe.model.trust_remote_code)

    def prepare(self, recipe: Recipe, run_dir: Path, augment: bool = True) -> Setup:
        cfg = recipe.data
        raw = carve_missing_splits(read_splits(cfg), cfg, stratify=None)
        for source, frame in raw.values():
            check_columns(source, frame, cfg, needs_label=False)
        model_path = resolve_model(recipe.model.name) if cfg.augment else None  # synonyms
        quality = DataQuality(cfg, run_dir / DATA_DIR, model_path)
        if quality.enabled:
            raw = quality.clean(raw, classes=False, labelled=False)
        handle = self.build_base(recipe, [])
        splits = {}
        for name, (source, frame) in raw.items():
            frame = subset(frame, cfg.max_train_samples if name == "train" else cfg.max_eval_samples,
                           cfg.split.seed)
            if quality.enabled:
                if name == "train":
                    frame = quality.augment(frame, classes=False, labelled=False)
                quality.keep(name, frame)
            fixed = None if name == "train" else recipe.seed  # evaluation masks stay put
            splits[name] = EncodedMLM(column_texts(source, frame, cfg.text_column), handle.tokenizer,
                                      recipe.model.max_length, cfg.mlm_probability, fixed)
        if quality.enabled:
            quality.write()
            if recipe.train.progress:
                print("\n".join(quality.lines()), file=sys.stderr)
        return Setup(handle, splits, [], TaskLoss(self.output, recipe.train, None), recipe.train,
                     info=quality_info(quality if quality.enabled else None))

    def write_test_outputs(self, setup: Setup, recipe: Recipe, run_dir: Path) -> dict:
        t = recipe.train
        return evaluate_split(setup.handle, setup.splits["test"], [], setup.loss_fn, t.eval_batch_size,
                              t.precision)

    def load_model(self, recipe: Recipe, directory: Path, labels: list[str]) -> tuple[ModelHandle, list[str]]:
        return load_masked_lm(directory, recipe.model.trust_remote_code), []
