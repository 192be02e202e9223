"""The trivial baseline beside every result, and a loud warning when a run does not beat it.

A classifier that predicts the training split's majority class for every input scores that
class's share as accuracy; on imbalanced data that can look like a result. A regressor that
predicts the training mean has r2 about 0. A run that does no better learned nothing, and says so.
"""

from __future__ import annotations

import numpy as np

from tailorkit.evaluate.evaluator import scalar_metrics
from tailorkit.evaluate.metrics import classification_metrics, regression_metrics

ADVICE = ("train longer (train.epochs), check train.lr{now} (LoRA and other adapters often need 1e-3 "
          "or more, full fine-tuning 1e-5 to 1e-4), {extra}or search with tailor tune")
IMBALANCE = "try train.class_weights: balanced for imbalanced classes, "


def baseline(output: str, train_targets: np.ndarray, splits: dict[str, np.ndarray],
             labels: list[str]) -> dict | None:
    """The trivial predictor fitted on the training targets, scored on each of `splits`."""
    if output == "classes":
        majority = int(np.bincount(train_targets, minlength=len(labels)).argmax())
        scores = {name: classification_metrics(y, np.full(len(y), majority), labels)
                  for name, y in splits.items()}
        rule = f"majority class '{labels[majority]}'"
    elif output == "scalar":
        mean = float(np.mean(train_targets))
        scores = {name: regression_metrics(y, np.full(len(y), mean)) for name, y in splits.items()}
        rule = f"training mean {mean:.4g}"
    else:
        return None
    return {"rule": rule, **{name: scalar_metrics(m) for name, m in scores.items()}}


def shortfalls(output: str, test: dict, trivial: dict | None, lr: float | None = None,
               loss: str = "auto") -> list[str]:
    """What the summary must not let pass silently; `lr` is the run's learning rate, for the
    advice. A regressor is judged by the error its loss minimises (mae with loss: mae, else mse)."""
    if trivial is None or "test" not in trivial:
        return []
    out = []
    if output == "classes":
        predicted = [sum(col) for col in zip(*test["confusion_matrix"]["matrix"], strict=True)]
        if sum(1 for n in predicted if n) == 1:
            name = test["confusion_matrix"]["labels"][next(i for i, n in enumerate(predicted) if n)]
            out.append(f"the model predicts '{name}' for every test example")
        if test["accuracy"] <= trivial["test"]["accuracy"]:
            out.append(f"test accuracy {test['accuracy']:.4f} does not beat the {trivial['rule']}, whose "
                       f"test accuracy is {trivial['test']['accuracy']:.4f}")
    elif output == "scalar":
        error = "mae" if loss == "mae" else "mse"
        if test[error] >= trivial["test"][error]:
            out.append(f"test {error} {test[error]:.4g} does not beat the {trivial['rule']}, whose test "
                       f"{error} is {trivial['test'][error]:.4g}")
    advice = ADVICE.format(now="" if lr is None else f" ({lr:g} now)",
                           extra=IMBALANCE if output == "classes" else "")
    return [f"{w}; {advice}" for w in out]
