"""Image classification: image folders, tables of paths or IDX files; MobileNetV2 or a Hugging
Face image classifier under a new head."""

from __future__ import annotations

import sys
from pathlib import Path

from tailorkit.config.metrics import CLASSIFICATION_METRICS
from tailorkit.config.recipe import Recipe
from tailorkit.data.feature_cache import files_identity
from tailorkit.data.image_data import EncodedImages, prepare_image_data
from tailorkit.data.image_mix import BatchMix
from tailorkit.data.image_transforms import ImageTransform
from tailorkit.data.quality import DATA_DIR, DataQuality, quality_info
from tailorkit.models.handle import ModelHandle
from tailorkit.models.vision import load_hf_image_classifier, load_image_classifier, load_saved, vision_handle
from tailorkit.sources import MODELS
from tailorkit.tasks.base import CLEAN_LABEL_FIELDS, TEXT_CLEAN_FIELDS, Task, register
from tailorkit.tasks.outputs import write_predictions
from tailorkit.train.loop import seed_everything
from tailorkit.train.losses import TaskLoss, class_weights
from tailorkit.train.setup import Setup


@register
class ImageClassification(Task):
    name = "image_classification"
    summary = "image classification (MobileNetV2 or a Hugging Face image classifier)"
    output = "classes"
    modality = "image"
    not_text_predictions = "classifies images: use tailor predict --image"
    losses = ("auto", "cross_entropy")
    metrics = CLASSIFICATION_METRICS
    headline = ["accuracy", "f1_macro", "precision_macro", "recall_macro", "loss"]
    auto_class = "AutoModelForImageClassification"
    reads = frozenset({"model.pretrained", "data.image_column", "data.label_column", "data.skip_bad",
                       "data.image", "data.split.stratify", "train.class_weights", "train.label_smoothing",
                       "data.clean"})
    ignores = {f"data.clean.{name}": "it reads text; images are compared by their decoded pixels"
               for name in TEXT_CLEAN_FIELDS + CLEAN_LABEL_FIELDS[1:]}
    refuses = {"data.augment": "images are augmented by data.image (augment: basic or strong, mixup, "
                               "cutmix)"}

    def build_base(self, recipe: Recipe, labels: list[str]) -> ModelHandle:
        seed_everything(recipe.seed)  # a new head's initial weights depend on it
        m = recipe.model
        return load_image_classifier(m.name, labels, m.pretrained, m.trust_remote_code)

    def prepare(self, recipe: Recipe, run_dir: Path, augment: bool = True) -> Setup:
        quality = DataQuality(recipe.data, run_dir / DATA_DIR)
        images, classes, skipped = prepare_image_data(recipe.data, quality if quality.enabled else None)
        if quality.enabled and recipe.train.progress:
            print("\n".join(quality.lines()), file=sys.stderr)
        handle = self.build_base(recipe, classes)
        transforms = {name: ImageTransform(recipe.data.image, train=augment and name == "train")
                      for name in images}
        # mixup/CutMix: training batches only, never validation or test
        mix = BatchMix(recipe.data.image, len(classes)) if augment and recipe.data.image.mixes else None
        splits = {name: EncodedImages(split, transforms[name], mix if name == "train" else None)
                  for name, split in images.items()}
        test = images["test"]
        weights = class_weights(images["train"].labels, len(classes), recipe.train.class_weights)
        return Setup(handle, splits, classes, TaskLoss(self.output, recipe.train, weights), recipe.train,
                     test_names=[test.name_of(i) for i in range(len(test))], test_targets=test.labels,
                     info={"skipped_images": skipped, **quality_info(quality if quality.enabled else None)})

    def write_test_outputs(self, setup: Setup, recipe: Recipe, run_dir: Path) -> dict:
        return write_predictions(setup, recipe, run_dir, name_column="image")

    def load_model(self, recipe: Recipe, directory: Path, labels: list[str]) -> tuple[ModelHandle, list[str]]:
        if (directory / "config.json").is_file():
            return load_hf_image_classifier(directory, len(labels), recipe.model.trust_remote_code), labels
        return vision_handle(load_saved(directory)), labels

    def weights_identity(self, recipe: Recipe) -> dict:
        """Its files, or the seed of a from-scratch model."""
        m = recipe.model
        if not m.pretrained:
            return {"name": m.name, "pretrained": False, "seed": recipe.seed}
        path = Path(m.name).expanduser()
        return {"files": files_identity(path if path.exists() else MODELS[m.name].path())}

    def preprocessing(self, recipe: Recipe) -> dict:
        t = recipe.data.image
        return {"size": t.size, "resize": t.resize_to, "mean": t.mean, "std": t.std}
