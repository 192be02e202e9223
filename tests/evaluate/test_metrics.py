"""Metrics against hand-computed values; the evaluator's ordering and prediction tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tailorkit.config.metrics import HIGHER_IS_BETTER, LOWER_IS_BETTER
from tailorkit.evaluate.evaluator import predict_logits, prediction_frame, scalar_metrics, score
from tailorkit.evaluate.metrics import classification_metrics, is_better, regression_metrics
from tailorkit.tasks import TASKS

LABELS = ["cat", "dog", "eel"]
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 0, 1, 1, 0, 1])


def test_classification_metrics_by_hand():
    m = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    assert m["accuracy"] == pytest.approx(3 / 6)
    # per class: cat P=2/3 R=2/3; dog P=1/3 R=1/2; eel P=0 (never predicted) R=0
    pc = m["per_class"]
    assert pc["cat"]["precision"] == pytest.approx(2 / 3) and pc["cat"]["recall"] == pytest.approx(2 / 3)
    assert pc["dog"]["precision"] == pytest.approx(1 / 3) and pc["dog"]["recall"] == pytest.approx(1 / 2)
    assert pc["eel"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert [pc[c]["support"] for c in LABELS] == [3, 2, 1]
    f1 = {"cat": 2 / 3, "dog": 2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2), "eel": 0.0}
    assert pc["dog"]["f1"] == pytest.approx(f1["dog"])
    assert m["precision_macro"] == pytest.approx((2 / 3 + 1 / 3 + 0) / 3)
    assert m["recall_macro"] == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)
    assert m["f1_macro"] == pytest.approx(sum(f1.values()) / 3)
    assert m["f1_weighted"] == pytest.approx((3 * f1["cat"] + 2 * f1["dog"]) / 6)
    for kind in ("precision", "recall", "f1"):  # single-label: micro = accuracy
        assert m[f"{kind}_micro"] == pytest.approx(0.5)


def test_confusion_matrix_rows_are_truth():
    cm = classification_metrics(Y_TRUE, Y_PRED, LABELS)["confusion_matrix"]
    assert cm["labels"] == LABELS
    assert cm["matrix"] == [[2, 1, 0], [1, 1, 0], [0, 1, 0]]


def test_classes_absent_from_both_still_appear():
    m = classification_metrics(np.array([0, 1]), np.array([0, 1]), LABELS)
    assert m["confusion_matrix"]["matrix"][2] == [0, 0, 0]
    assert m["per_class"]["eel"]["support"] == 0 and m["accuracy"] == 1.0


def test_regression_metrics_by_hand():
    y, p = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 5.0])
    m = regression_metrics(y, p)
    assert m["mse"] == pytest.approx((0.25 + 0 + 1 + 1) / 4)
    assert m["rmse"] == pytest.approx(m["mse"] ** 0.5)
    assert m["mae"] == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert m["r2"] == pytest.approx(1 - 2.25 / 5.0)


def test_r2_undefined_for_one_example():
    assert np.isnan(regression_metrics(np.array([1.0]), np.array([2.0]))["r2"])


@pytest.mark.parametrize(("metric", "new", "old", "delta", "better"), [
    ("loss", 0.4, 0.5, 0.0, True), ("loss", 0.5, 0.5, 0.0, False), ("loss", 0.45, 0.5, 0.1, False),
    ("accuracy", 0.6, 0.5, 0.0, True), ("accuracy", 0.4, 0.5, 0.0, False),
    ("accuracy", 0.55, 0.5, 0.1, False), ("r2", 0.2, 0.1, 0.0, True), ("mae", 0.2, 0.1, 0.0, False),
    ("f1_macro", 0.0, None, 0.0, True),
])
def test_is_better(metric, new, old, delta, better):
    assert is_better(metric, new, old, delta) is better


def test_every_reported_scalar_can_be_watched():
    """Early stopping accepts exactly the scalars each task reports (plus the loss), and
    every metric a task names has a direction."""
    cls = scalar_metrics(classification_metrics(Y_TRUE, Y_PRED, LABELS))
    assert set(TASKS["classification"].metrics) == set(cls) | {"loss"}
    reg = scalar_metrics(regression_metrics(np.array([1.0, 2.0]), np.array([1.0, 3.0])))
    assert set(TASKS["regression"].metrics) == set(reg) | {"loss"}
    for task in TASKS.values():
        assert set(task.metrics) <= HIGHER_IS_BETTER | LOWER_IS_BETTER


def test_score_adds_the_loss():
    from tailorkit.config import TrainConfig
    from tailorkit.train.losses import TaskLoss

    logits = np.array([[2.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    m = score("classes", logits, np.array([0, 0]), ["a", "b"],
              TaskLoss("classes", TrainConfig(), None))
    expected = float(torch.nn.functional.cross_entropy(torch.tensor(logits), torch.tensor([0, 0])))
    assert m["loss"] == pytest.approx(expected) and m["accuracy"] == 0.5


def test_prediction_frame_classification():
    logits = np.array([[0.0, 2.0], [3.0, 0.0]], dtype=np.float32)
    frame = prediction_frame("classes", ["x", "y"], logits, ["neg", "pos"], np.array([1, 1]))
    assert list(frame.columns) == ["text", "label", "prediction", "confidence", "p_neg", "p_pos"]
    assert frame.prediction.tolist() == ["pos", "neg"] and frame.label.tolist() == ["pos", "pos"]
    np.testing.assert_allclose(frame.p_neg + frame.p_pos, 1.0, rtol=1e-6)
    assert frame.confidence[0] == pytest.approx(1 / (1 + np.exp(-2.0)))


def test_predict_logits_returns_the_original_order(make_handle, tiny_model_dir):
    """Batches are sorted by length inside; the result must line up with the input rows."""
    from transformers import AutoTokenizer

    from tailorkit.data.batching import EncodedSplit
    from tailorkit.data.prepare import Split

    handle = make_handle()
    texts = ["good", "the movie was very very good and nice", "bad film", "it is a sad day", "ugly"]
    data = EncodedSplit(Split("t", texts, None, np.zeros(5, dtype=np.int64)),
                        AutoTokenizer.from_pretrained(tiny_model_dir), 32)
    handle.model.train()
    out = predict_logits(handle, data, batch_size=2)
    assert handle.model.training  # mode restored
    handle.model.eval()
    with torch.no_grad():
        one_by_one = np.concatenate([handle.forward(data.collate([i])).numpy() for i in range(5)])
    np.testing.assert_allclose(out, one_by_one, atol=1e-5)
