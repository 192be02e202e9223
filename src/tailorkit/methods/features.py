"""Feature extraction: a frozen backbone's pooled features, computed once and cached, feed a new head.

The backbone never trains, so its output is a fixed function of the input: computing it once
(`tailorkit.data.feature_cache`) and training the head for many epochs over the cache costs one
forward pass per example instead of one per epoch. The head is a linear layer, a small MLP, or a
scikit-learn estimator (`tailorkit.models.sklearn_heads`). The method builds its own setup
(`tasks.setup`), so it composes with no other method.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from tailorkit.methods.base import Method, MethodConfig, register
from tailorkit.models.sklearn_heads import ESTIMATORS

TORCH_HEADS = ("linear", "mlp")
TASKS = ("classification", "regression", "image_classification")
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
    feature_extraction = True

    def apply(self, handle) -> None:
        handle.set_trainable(lambda name: name.startswith("head."))

    def check_recipe(self, recipe, where: str) -> None:
        c = self.config
        if len(recipe.methods) > 1:
            raise ValueError(f"{where}: features trains a new head on a frozen backbone and composes "
                             "with no other method; remove the others or train them as a separate run")
        if recipe.task not in TASKS:
            raise ValueError(f"{where}: features needs a classifier or regressor (task: "
                             f"{', '.join(TASKS)}), not {recipe.task}")
        task = "regression" if recipe.task == "regression" else "classification"
        if c.head not in TORCH_HEADS and task not in ESTIMATORS[c.head].builders:
            fitting = [n for n, e in ESTIMATORS.items() if task in e.builders]
            raise ValueError(f"{where}.features.head: {c.head} does not fit task {recipe.task} "
                             f"(use linear, mlp or one of: {', '.join(fitting)})")
        if c.head in TORCH_HEADS and c.options:
            raise ValueError(f"{where}.features.options: only scikit-learn heads take options; "
                             f"{c.head} is set by hidden, dropout, standardize, head_epochs and head_lr")
        if c.head not in TORCH_HEADS:
            ESTIMATORS[c.head].check_options(task, c.options, f"{where}.features.options")
        if recipe.task == "image_classification" and "pooling" in c.model_fields_set:
            raise ValueError(f"{where}.features.pooling: applies to text models; MobileNetV2's "
                             "features are always its global average pool")
