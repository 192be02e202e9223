"""Classification and regression metrics (scikit-learn underneath, imported when a metric is
computed: a language-model run never needs it)."""

from __future__ import annotations

import numpy as np

from tailorkit.config.metrics import HIGHER_IS_BETTER


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    from sklearn import metrics as skm

    ids = list(range(len(labels)))
    out: dict = {"accuracy": float(skm.accuracy_score(y_true, y_pred))}
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=ids, average=avg, zero_division=0
        )
        out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = float(p), float(r), float(f)
    p, r, f, s = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=ids, average=None, zero_division=0
    )
    out["per_class"] = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(labels)
    }
    out["confusion_matrix"] = {
        "labels": labels, "matrix": skm.confusion_matrix(y_true, y_pred, labels=ids).tolist()
    }
    return out


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    from sklearn import metrics as skm

    mse = float(skm.mean_squared_error(y_true, y_pred))
    return {
        "mse": mse,
        "rmse": mse ** 0.5,
        "mae": float(skm.mean_absolute_error(y_true, y_pred)),
        "r2": float(skm.r2_score(y_true, y_pred)) if len(y_true) > 1 else float("nan"),
    }


def is_better(metric: str, new: float, old: float | None, min_delta: float = 0.0) -> bool:
    """Higher is better for the metrics named in config.metrics.HIGHER_IS_BETTER, else lower."""
    if old is None:
        return True
    if metric in HIGHER_IS_BETTER:
        return new > old + min_delta
    return new < old - min_delta
