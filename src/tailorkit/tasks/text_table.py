"""What text classification and regression share: one table of texts (or text pairs) and a
target column, a sequence-classification model, and a predictions table for the test split."""

from __future__ import annotations

import sys
from pathlib import Path

from tailorkit.config.recipe import Recipe
from tailorkit.data.batching import EncodedSplit
from tailorkit.data.feature_cache import files_identity
from tailorkit.data.prepare import TaskData, prepare_data
from tailorkit.data.quality import DATA_DIR, DataQuality
from tailorkit.models.handle import ModelHandle, handle_for, load_text_classifier
from tailorkit.models.structure import has_structure, load_restructured
from tailorkit.sources import resolve_model
from tailorkit.tasks.base import Task
from tailorkit.tasks.outputs import write_predictions
from tailorkit.train.loop import seed_everything
from tailorkit.train.losses import TaskLoss
from tailorkit.train.setup import Setup


class TextTableTask(Task):
    table = True
    auto_class = "AutoModelForSequenceClassification"
    reads = frozenset({"model.max_length", "data.text_column", "data.text_pair_column", "data.label_column",
                       "data.clean", "data.augment"})

    def loss(self, recipe: Recipe, data: TaskData) -> TaskLoss:
        return TaskLoss(self.output, recipe.train, None)

    def build_base(self, recipe: Recipe, labels: list[str]) -> ModelHandle:
        seed_everything(recipe.seed)  # a new head's initial weights depend on it
        m = recipe.model
        return load_text_classifier(resolve_model(m.name), self.output, labels, m.trust_remote_code)

    def prepare(self, recipe: Recipe, run_dir: Path, augment: bool = True) -> Setup:
        model_path = resolve_model(recipe.model.name) if recipe.data.augment else None  # synonyms
        quality = DataQuality(recipe.data, run_dir / DATA_DIR, model_path, recipe.model.name,
                              recipe.model.max_length, recipe.train.progress)
        data = prepare_data(recipe.data, classes=self.output == "classes",
                            quality=quality if quality.enabled else None)
        if data.quality is not None and recipe.train.progress:
            print("\n".join(data.quality.lines()), file=sys.stderr)
        handle = self.build_base(recipe, data.labels)
        splits = {name: EncodedSplit(split, handle.tokenizer, recipe.model.max_length)
                  for name, split in data.splits.items()}
        test = data.splits["test"]
        info = {"data_quality": data.quality.summary()} if data.quality is not None else {}
        return Setup(handle, splits, data.labels, self.loss(recipe, data), recipe.train,
                     test_names=test.texts, test_pairs=test.pairs, test_targets=test.targets, info=info)

    def write_test_outputs(self, setup: Setup, recipe: Recipe, run_dir: Path) -> dict:
        return write_predictions(setup, recipe, run_dir)

    def load_model(self, recipe: Recipe, directory: Path, labels: list[str]) -> tuple[ModelHandle, list[str]]:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        trust = recipe.model.trust_remote_code
        model = (load_restructured(self.auto_class, directory, trust) if has_structure(directory)
                 else AutoModelForSequenceClassification.from_pretrained(directory, trust_remote_code=trust))
        tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=trust)
        if self.output == "classes":
            labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        handle = handle_for(model, tokenizer, self.output)
        handle.reshaped = has_structure(directory)  # a later compression step saves it again
        return handle, labels

    def weights_identity(self, recipe: Recipe) -> dict:
        return {"files": files_identity(resolve_model(recipe.model.name))}

    def preprocessing(self, recipe: Recipe) -> dict:
        return {"max_length": recipe.model.max_length}
