"""Feature extraction: a frozen backbone's pooled features, computed once and cached, feed a new head.

The backbone never trains, so its output is a fixed function of the input: computing it once
(`tailorkit.data.feature_cache`) and training the head for many epochs over the cache costs one
forward pass per example instead of one per epoch. The head is a linear layer, a small MLP, or a
scikit-learn estimator (`tailorkit.models.sklearn_heads`). The method replaces the whole setup
(`adapt`), its loop for a scikit-learn head (`make_trainer`) and the run's saved model (the head
only, `save_model`), so it composes with no other method.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from tailorkit.config.plugins import set_options
from tailorkit.data.feature_cache import EncodedFeatures, cache_key, cached_features
from tailorkit.errors import TailorError
from tailorkit.methods.base import Method, MethodConfig, register
from tailorkit.models.feature_model import FeatureModel, feature_dim, feature_handle, load_feature_handle
from tailorkit.models.handle import ModelHandle
from tailorkit.models.sklearn_heads import ESTIMATORS, SklearnHead
from tailorkit.train.fit_once import FitOnce
from tailorkit.train.setup import Setup

TORCH_HEADS = ("linear", "mlp")
OUTPUTS = ("classes", "scalar")  # the model outputs a head over pooled features can give
HeadName = Literal["linear", "mlp", "logistic_regression", "svm", "gradient_boosting", "random_forest",
                   "ridge", "svr"]


class FeaturesConfig(MethodConfig):
    head: HeadName = Field("linear", description="linear, mlp, or a scikit-learn estimator: "
                                                 "logistic_regression, svm, gradient_boosting, "
                                                 "random_forest (classification); ridge, svr, "
                                                 "gradient_boosting, random_forest (regression).")
    hidden: int = Field(256, ge=1, description="mlp: width of the hidden layer.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="mlp: dropout after the hidden layer.")
    standardize: bool = Field(True, description="linear/mlp: scale each feature to zero mean and unit "
                                                "variance over the train split (stored in the head).")
    pooling: Literal["mean", "cls"] = Field(
        "mean", description="text: mean over the non-padding tokens, or the first ([CLS]) token.")
    head_epochs: float = Field(50, gt=0, description="linear/mlp: epochs over the cached features "
                                                     "(replaces train.epochs).")
    head_lr: float | None = Field(1e-3, gt=0, description="linear/mlp: learning rate of the new head; "
                                                          "null: train.lr.")
    cache: Literal["memory", "disk"] = Field(
        "memory", description="memory: features live for this process; disk: safetensors files under "
                              "the tailorkit cache, reused by later runs on the same model and data.")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="scikit-learn heads: estimator arguments, e.g. {C: 0.5}.")


@register
class Features(Method):
    name = "features"
    Config = FeaturesConfig
    summary = "feature extraction: frozen backbone, pooled features cached once, new head trained on them"
    default_lr = 1e-3  # sources: methods.base.default_lr_of
    fixed_inputs = True

    @property
    def saves_model(self) -> bool:
        return True

    def apply(self, handle) -> None:
        handle.set_trainable(lambda name: name.startswith("head."))

    def export_refusal(self, fmt: str) -> str:
        if fmt != "onnx":
            return ("a features run is the frozen base with a head on its pooled features "
                    "(model/head.safetensors, features.json), not one transformers model; export "
                    "--format onnx, which holds both, or serve the run (tailor serve)")
        if self.config.head not in TORCH_HEADS:
            return (f"a scikit-learn head ({self.config.head}) has no ONNX graph; train features with "
                    "head: linear or mlp to export, or serve the run (tailor serve)")
        return ""

    def check_recipe(self, recipe, task, where: str) -> None:
        c = self.config
        if len(recipe.methods) > 1:
            raise ValueError(f"{where}: features trains a new head on a frozen backbone and composes "
                             "with no other method; remove the others or train them as a separate run")
        if task.output not in OUTPUTS:
            raise ValueError(f"{where}: features needs a classifier or regressor, not task {task.name}")
        if c.head not in TORCH_HEADS and task.output not in ESTIMATORS[c.head].builders:
            fitting = [n for n, e in ESTIMATORS.items() if task.output in e.builders]
            raise ValueError(f"{where}.features.head: {c.head} does not fit task {task.name} "
                             f"(use linear, mlp or one of: {', '.join(fitting)})")
        if c.head in TORCH_HEADS and c.options:
            raise ValueError(f"{where}.features.options: only scikit-learn heads take options; "
                             f"{c.head} is set by hidden, dropout, standardize, head_epochs and head_lr")
        if c.head not in TORCH_HEADS:
            ESTIMATORS[c.head].check_options(task.output, c.options, f"{where}.features.options")
        if task.modality == "image" and "pooling" in set_options(c):
            raise ValueError(f"{where}.features.pooling: applies to text models; MobileNetV2's "
                             "features are always its global average pool")

    def adapt(self, setup: Setup, task, recipe) -> Setup:
        """Frozen backbone -> pooled features of every split, once (or from the cache) -> a new
        head that trains on them. `setup` comes with evaluation preprocessing for every split
        (`fixed_inputs`): features computed once cannot be augmented."""
        c, base = self.config, setup.handle
        spec = {"head": c.head, "output": base.output, "feature_dim": feature_dim(base),
                "num_outputs": len(setup.labels) if base.output == "classes" else 1,
                "hidden": c.hidden, "dropout": c.dropout, "standardize": c.standardize,
                "pooling": c.pooling if base.modality == "text" else "average"}
        handle = feature_handle(base, spec)
        if isinstance(handle.model.head, SklearnHead):
            handle.model.head.estimator = ESTIMATORS[c.head].build(base.output, c.options)
        self.apply(handle)
        identity = {"model": task.weights_identity(recipe), "modality": base.modality,
                    "pooling": spec["pooling"], "preprocessing": task.preprocessing(recipe),
                    "bf16": recipe.train.bf16}
        t = recipe.train
        started, hits, splits = time.perf_counter(), {}, {}
        for split, encoded in setup.splits.items():
            features, hits[split] = cached_features(handle.model, encoded, cache_key(identity, encoded),
                                                    c.cache, t.eval_batch_size, t.bf16)
            splits[split] = EncodedFeatures(features, encoded.targets)
        handle.model.fit_scaling(splits["train"].features)
        info = {**setup.info, "features": {
            "head": c.head, "pooling": spec["pooling"], "dim": spec["feature_dim"], "cache": c.cache,
            "from_cache": hits, "extract_seconds": round(time.perf_counter() - started, 2)}}
        head_train = t.model_copy(update={"epochs": c.head_epochs, "lr": c.head_lr or t.lr})
        return Setup(handle, splits, setup.labels, setup.loss_fn, head_train, setup.methods,
                     test_names=setup.test_names, test_pairs=setup.test_pairs,
                     test_targets=splits["test"].targets, info=info)

    def make_trainer(self, setup: Setup, recipe, run_dir: Path):
        if isinstance(setup.handle.model.head, SklearnHead):  # one fit, no epochs
            return FitOnce(setup.handle, setup.splits["train"], setup.splits["validation"], setup.train,
                           setup.loss_fn, setup.labels, run_dir, where="methods[0].features.options")
        return None

    def fits_without_gradients(self, handle: ModelHandle) -> bool:
        return isinstance(handle.model.head, SklearnHead)

    def on_fit_end(self, setup: Setup, seconds: float) -> None:
        setup.info["features"]["head_seconds"] = round(seconds, 2)  # the head's training over the cache

    def save_model(self, handle: ModelHandle, directory: Path) -> None:
        """The head only: the backbone is the recipe's base model."""
        model: FeatureModel = handle.model
        model.save_head(directory)

    def load_model(self, methods: list[Method], base: ModelHandle, directory: Path, nf4=None) -> ModelHandle:
        return load_feature_handle(base, directory)

    def merge(self, handle: ModelHandle) -> None:
        raise TailorError("a features run keeps a separate head on the unchanged base; there is "
                          "nothing to merge (predict with the run directory)")
