"""Task losses checked against the formulas, not against the code under test."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tailorkit.config import TrainConfig
from tailorkit.errors import TailorError
from tailorkit.train.losses import TaskLoss, class_weights

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-1.0, 3.0, 0.0], [0.0, 0.0, 4.0]])
LABELS = torch.tensor([0, 2, 1, 0])


def _nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example -log p(y), computed by hand."""
    logp = logits - logits.exp().sum(-1, keepdim=True).log()
    return -logp[torch.arange(len(labels)), labels]


def test_auto_picks_the_task_loss():
    assert TaskLoss("classes", TrainConfig(), None).kind == "cross_entropy"
    assert TaskLoss("scalar", TrainConfig(), None).kind == "mse"
    assert TaskLoss("scalar", TrainConfig(loss="mae"), None).kind == "mae"


def test_cross_entropy_is_mean_nll():
    loss = TaskLoss("classes", TrainConfig(), None)(LOGITS, LABELS)
    assert float(loss) == pytest.approx(float(_nll(LOGITS, LABELS).mean()), rel=1e-6)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_label_smoothing(eps):
    loss = TaskLoss("classes", TrainConfig(label_smoothing=eps), None)(LOGITS, LABELS)
    k = LOGITS.shape[1]
    logp = torch.log_softmax(LOGITS, -1)
    # target = (1 - eps) one-hot + eps / k uniform
    target = torch.full_like(logp, eps / k)
    target[torch.arange(4), LABELS] += 1 - eps
    expected = float(-(target * logp).sum(-1).mean())
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(loss) != pytest.approx(float(_nll(LOGITS, LABELS).mean()), rel=1e-3)


def test_balanced_class_weights_follow_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    targets = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2])
    ours = class_weights(targets, 3, "balanced")
    theirs = compute_class_weight("balanced", classes=np.arange(3), y=targets)
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-6)
    assert ours[2] > ours[1] > ours[0]


def test_balanced_weights_with_a_class_missing_from_train_stay_finite():
    weights = class_weights(np.array([0, 0, 1]), 3, "balanced")
    assert torch.isfinite(weights).all()


def test_explicit_class_weights_and_none():
    assert class_weights(np.array([0, 1]), 2, "none") is None
    assert class_weights(np.array([0, 1]), 2, [1.0, 3.0]).tolist() == [1.0, 3.0]


def test_wrong_number_of_class_weights_is_a_user_error():
    with pytest.raises(TailorError, match="train.class_weights has 3 values for 2 classes"):
        class_weights(np.array([0, 1]), 2, [1.0, 2.0, 3.0])


def test_weighted_cross_entropy_is_the_weighted_mean():
    weights = torch.tensor([1.0, 2.0, 0.5])
    loss = TaskLoss("classes", TrainConfig(), weights)(LOGITS, LABELS)
    w = weights[LABELS]
    expected = float((w * _nll(LOGITS, LABELS)).sum() / w.sum())
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_class_weights_shift_the_loss_toward_the_rare_class():
    plain = TaskLoss("classes", TrainConfig(), None)
    weighted = TaskLoss("classes", TrainConfig(), torch.tensor([1.0, 1.0, 10.0]))
    wrong_on_class_2 = torch.tensor([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    labels = torch.tensor([2, 1])
    assert float(weighted(wrong_on_class_2, labels)) > float(plain(wrong_on_class_2, labels))


def test_mse_and_mae():
    pred = torch.tensor([[0.5], [2.0], [-1.0]])
    target = torch.tensor([1.0, 2.0, 1.0])
    mse = TaskLoss("scalar", TrainConfig(loss="mse"), None)(pred, target)
    mae = TaskLoss("scalar", TrainConfig(loss="mae"), None)(pred, target)
    assert float(mse) == pytest.approx((0.25 + 0 + 4) / 3)
    assert float(mae) == pytest.approx((0.5 + 0 + 2) / 3)


def test_regression_batch_of_one_and_bf16_logits():
    loss = TaskLoss("scalar", TrainConfig(), None)
    assert float(loss(torch.tensor([[3.0]]), torch.tensor([1.0]))) == pytest.approx(4.0)
    out = loss(torch.tensor([[3.0]], dtype=torch.bfloat16), torch.tensor([1.0]))
    assert out.dtype == torch.float32


@pytest.mark.parametrize(("eps", "weights"), [(0.0, None), (0.1, None), (0.2, [1.0, 2.0, 0.5])])
def test_one_hot_soft_targets_give_the_hard_label_loss(eps, weights):
    """mixup/CutMix targets are soft; unmixed (one-hot) they must score exactly as the labels do,
    label smoothing and class weights included (torch's own cross-entropy is the reference)."""
    w = None if weights is None else torch.tensor(weights)
    loss = TaskLoss("classes", TrainConfig(label_smoothing=eps), w)
    one_hot = torch.nn.functional.one_hot(LABELS, 3).float()
    assert float(loss(LOGITS, one_hot)) == pytest.approx(float(loss(LOGITS, LABELS)), rel=1e-6)


def test_mixed_targets_give_the_mixed_loss():
    """Unweighted cross-entropy is linear in the target: lam * CE(a) + (1 - lam) * CE(b)."""
    loss = TaskLoss("classes", TrainConfig(label_smoothing=0.1), None)
    other = torch.tensor([1, 1, 2, 0])
    eye = torch.eye(3)
    mixed = 0.7 * eye[LABELS] + 0.3 * eye[other]
    expected = 0.7 * float(loss(LOGITS, LABELS)) + 0.3 * float(loss(LOGITS, other))
    assert float(loss(LOGITS, mixed)) == pytest.approx(expected, rel=1e-6)
