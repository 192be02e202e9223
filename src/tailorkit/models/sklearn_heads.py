"""scikit-learn estimators as the head of a feature-extraction run.

A small explicit table: each name maps to one estimator per output kind (classes or scalar)
and to the types its saved file may hold. Saving uses skops (no pickle); loading refuses any
type the table does not list, so a tampered head file cannot run code. Scale-sensitive
estimators get a StandardScaler first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tailorkit.errors import TailorError, first_line

HEAD_FILE = "head.skops"
EPS = 1e-12  # probabilities are clipped before the log, so a confident 0 is not -inf


def _scaled(estimator):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), estimator)


def _logistic(**kw):
    from sklearn.linear_model import LogisticRegression

    return _scaled(LogisticRegression(**{"max_iter": 1000, **kw}))


def _svm(**kw):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    # SVC(probability=True) is deprecated; this is its replacement and gives the same Platt scaling
    return _scaled(CalibratedClassifierCV(SVC(**kw), ensemble=False))


def _hist_gb(output: str):
    def build(**kw):
        from sklearn import ensemble

        cls = ensemble.HistGradientBoostingClassifier if output == "classes" \
            else ensemble.HistGradientBoostingRegressor
        return cls(**{"random_state": 0, **kw})
    return build


def _forest(output: str):
    def build(**kw):
        from sklearn import ensemble

        cls = ensemble.RandomForestClassifier if output == "classes" \
            else ensemble.RandomForestRegressor
        return cls(**{"n_estimators": 200, "random_state": 0, "n_jobs": 1, **kw})
    return build


def _ridge(**kw):
    from sklearn.linear_model import Ridge

    return _scaled(Ridge(**kw))


def _svr(**kw):
    from sklearn.svm import SVR

    return _scaled(SVR(**kw))


@dataclass(frozen=True)
class Estimator:
    builders: dict[str, Callable]  # output kind ("classes" | "scalar") -> build(**options)
    trusted: tuple[str, ...] = ()  # types beyond skops' defaults that its saved file holds

    def build(self, output: str, options: dict):
        return self.builders[output](**options)

    def check_options(self, output: str, options: dict, where: str) -> None:
        """Unknown argument names and values scikit-learn's own constraints refuse (C: -1) fail at
        recipe validation, not after the features were extracted."""
        from sklearn.base import BaseEstimator

        try:
            built = self.build(output, options)
            inner = [v for v in built.get_params(deep=True).values() if isinstance(v, BaseEstimator)]
            for estimator in [built, *inner]:
                estimator._validate_params()  # scikit-learn's declared parameter constraints
        except (TypeError, ValueError) as err:  # InvalidParameterError is both
            raise ValueError(f"{where}: {first_line(err)}") from None


_TREE = "sklearn.tree._tree.Tree"
_HIST = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
ESTIMATORS: dict[str, Estimator] = {
    "logistic_regression": Estimator({"classes": _logistic}),
    "svm": Estimator({"classes": _svm}, ("sklearn.calibration._CalibratedClassifier",
                                                "sklearn.calibration._SigmoidCalibration")),
    "gradient_boosting": Estimator({"classes": _hist_gb("classes"),
                                    "scalar": _hist_gb("scalar")}, (_HIST,)),
    "random_forest": Estimator({"classes": _forest("classes"),
                                "scalar": _forest("scalar")}, (_TREE,)),
    "ridge": Estimator({"scalar": _ridge}),
    "svr": Estimator({"scalar": _svr}),
}


class SklearnHead(nn.Module):
    """A fitted estimator behind the head interface: features in, logits out.

    Classifiers return log-probabilities (softmax gives the estimator's probabilities back),
    regressors their prediction as one column."""

    def __init__(self, name: str, output: str, num_outputs: int, estimator=None) -> None:
        super().__init__()
        self.name, self.output, self.num_outputs = name, output, num_outputs
        self.estimator = estimator

    def fit(self, features: np.ndarray, targets: np.ndarray, sample_weight: np.ndarray | None,
            where: str) -> None:
        kwargs = {}
        if sample_weight is not None:  # a pipeline routes it to its last step by name
            last = self.estimator.steps[-1][0] + "__" if hasattr(self.estimator, "steps") else ""
            kwargs[last + "sample_weight"] = sample_weight
        try:
            self.estimator.fit(features, targets, **kwargs)
        except ValueError as err:  # InvalidParameterError: a bad option value
            raise TailorError(f"{where}: {err}") from None

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features.detach().float().cpu().numpy()
        if self.output == "scalar":
            return torch.from_numpy(self.estimator.predict(x).astype(np.float32)).unsqueeze(-1)
        probs = self.estimator.predict_proba(x)
        out = np.full((len(x), self.num_outputs), np.log(EPS), dtype=np.float32)
        # a class absent from train keeps probability ~0
        out[:, self.estimator.classes_] = np.log(np.clip(probs, EPS, None))
        return torch.from_numpy(out)

    def size(self) -> int:
        """Numbers the fitted estimator holds: the counterpart of a torch head's parameters."""
        return _size(self.estimator)

    def save(self, directory: Path) -> None:
        import skops.io as sio

        sio.dump(self.estimator, directory / HEAD_FILE)

    def load(self, directory: Path) -> None:
        import skops.io as sio

        path = directory / HEAD_FILE
        found = sio.get_untrusted_types(file=path)
        unexpected = sorted(set(found) - set(ESTIMATORS[self.name].trusted))
        if unexpected:
            raise TailorError(f"{path}: holds types a {self.name} head never saves "
                              f"({', '.join(unexpected)}); refusing to load it")
        self.estimator = sio.load(path, trusted=found)


def _size(obj) -> int:
    if isinstance(obj, np.ndarray):
        return obj.size if obj.dtype != object else sum(_size(o) for o in obj.flat)
    if isinstance(obj, list | tuple):
        return sum(_size(o) for o in obj)
    if hasattr(obj, "tree_"):  # a decision tree: its nodes
        return int(obj.tree_.node_count)
    if hasattr(obj, "steps"):  # a pipeline
        return sum(_size(step) for _, step in obj.steps)
    if hasattr(obj, "calibrated_classifiers_"):
        return sum(_size(c.estimator) + 2 * len(c.calibrators) for c in obj.calibrated_classifiers_)
    if hasattr(obj, "_predictors"):  # histogram gradient boosting: nodes of every tree
        return sum(p.nodes.size for trees in obj._predictors for p in trees)
    if hasattr(obj, "get_params"):
        return sum(_size(v) for k, v in vars(obj).items() if k.endswith("_") and not k.startswith("_"))
    return 0
