"""Text classification, binary or multi-class, of single texts or text pairs."""

from __future__ import annotations

from tailorkit.config.metrics import CLASSIFICATION_METRICS
from tailorkit.config.recipe import Recipe
from tailorkit.data.prepare import TaskData
from tailorkit.tasks.base import register
from tailorkit.tasks.text_table import TextTableTask
from tailorkit.train.losses import TaskLoss, class_weights


@register
class Classification(TextTableTask):
    name = "classification"
    summary = "text classification (binary or multi-class; single texts or pairs)"
    output = "classes"
    losses = ("auto", "cross_entropy")
    metrics = CLASSIFICATION_METRICS
    headline = ["accuracy", "f1_macro", "precision_macro", "recall_macro", "loss"]
    reads = TextTableTask.reads | {"data.split.stratify", "train.class_weights", "train.label_smoothing"}

    def loss(self, recipe: Recipe, data: TaskData) -> TaskLoss:
        weights = class_weights(data.splits["train"].targets, data.num_labels, recipe.train.class_weights)
        return TaskLoss(self.output, recipe.train, weights)
