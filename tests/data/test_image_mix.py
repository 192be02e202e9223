"""mixup and CutMix (data/image_mix.py): the mixed pixels and soft targets checked against their
definitions, determinism under a seed, and the image task mixing training batches only."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tailorkit.config import ImageTransformConfig
from tailorkit.data.image_mix import BatchMix
from tailorkit.data.image_transforms import ImageTransform

N, C, SIDE = 6, 6, 16


def _batch() -> dict[str, torch.Tensor]:
    """Image k is constant k + 1 (so pasted pixels tell whose they are); label k (all distinct)."""
    pixels = torch.arange(1, N + 1, dtype=torch.float32).view(N, 1, 1, 1).expand(N, 3, SIDE, SIDE).clone()
    return {"pixel_values": pixels, "labels": torch.arange(N)}


def _mix(seed: int, **options) -> dict[str, torch.Tensor]:
    return BatchMix(ImageTransformConfig(**options), C)(_batch(), torch.Generator().manual_seed(seed))


def _partner_and_lam(targets: torch.Tensor, i: int) -> tuple[int, float]:
    """Row i of the soft targets names the partner and lam (label i is i, all labels distinct)."""
    lam = float(targets[i, i])
    others = [j for j in range(C) if j != i and targets[i, j] > 0]
    return (others[0] if others else i), lam


@pytest.mark.parametrize("seed", range(5))
def test_mixup_pixels_and_targets_follow_one_lam(seed):
    out = _mix(seed, mixup=0.4)
    x, targets = out["pixel_values"], out["labels"]
    assert targets.dtype == torch.float32 and targets.shape == (N, C)
    torch.testing.assert_close(targets.sum(-1), torch.ones(N))
    lams = set()
    for i in range(N):
        j, lam = _partner_and_lam(targets, i)
        if j == i:  # mixed with itself: still its own one-hot
            assert targets[i, i] == pytest.approx(1.0)
            continue
        assert targets[i, j] == pytest.approx(1 - lam, abs=1e-6)
        torch.testing.assert_close(x[i], torch.full((3, SIDE, SIDE), lam * (i + 1) + (1 - lam) * (j + 1)))
        lams.add(round(lam, 6))
    assert len(lams) == 1 and 0 < lams.pop() < 1  # one lam for the whole batch


@pytest.mark.parametrize("seed", range(8))
def test_cutmix_lam_is_the_area_left_of_the_image(seed):
    out = _mix(seed, cutmix=1.0)
    x, targets = out["pixel_values"], out["labels"]
    torch.testing.assert_close(targets.sum(-1), torch.ones(N))
    pasted_seen = False
    for i in range(N):
        j, lam = _partner_and_lam(targets, i)
        own = (x[i] == i + 1).all(0)  # pixels still image i's
        if j == i:
            continue
        pasted = (x[i] == j + 1).all(0)
        assert bool((own | pasted).all())  # every pixel is one image's or the other's
        assert lam == pytest.approx(float(own.float().mean()), abs=1e-6)  # the real share left
        assert targets[i, j] == pytest.approx(float(pasted.float().mean()), abs=1e-6)
        rows, cols = torch.nonzero(pasted, as_tuple=True)
        if len(rows):  # the pasted part is one box
            pasted_seen = True
            box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
            assert int(box) == len(rows)
    assert pasted_seen or seed  # seed 0 pastes something (a run of draws all empty would be a bug)


def test_both_on_switch_between_mixup_and_cutmix():
    kinds = set()
    for seed in range(30):
        x = _mix(seed, mixup=1.0, cutmix=1.0)["pixel_values"]
        fractional = bool((x != x.round()).any())  # mixup blends k+1 values; cutmix only moves them
        kinds.add("mixup" if fractional else "cutmix")
    assert kinds == {"mixup", "cutmix"}
    assert all(bool((_mix(s, mixup=1.0, cutmix=1.0, switch_prob=1.0)["pixel_values"] % 1 == 0).all())
               for s in range(10))


def test_mix_prob_leaves_some_batches_as_one_hot():
    unmixed = [s for s in range(40) if torch.equal(_mix(s, mixup=1.0, mix_prob=0.5)["pixel_values"],
                                                    _batch()["pixel_values"])]
    assert 5 < len(unmixed) < 35
    targets = _mix(unmixed[0], mixup=1.0, mix_prob=0.5)["labels"]
    torch.testing.assert_close(targets, torch.eye(N))


def test_same_seed_same_batches_other_seed_others():
    a, b, c = _mix(3, mixup=0.4, cutmix=1.0), _mix(3, mixup=0.4, cutmix=1.0), _mix(4, mixup=0.4, cutmix=1.0)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["labels"], c["labels"])
    torch.manual_seed(11)  # without a generator: torch's global RNG, which checkpoints save
    first = BatchMix(ImageTransformConfig(mixup=0.4), C)(_batch())
    torch.manual_seed(11)
    again = BatchMix(ImageTransformConfig(mixup=0.4), C)(_batch())
    assert torch.equal(first["pixel_values"], again["pixel_values"])


def test_zero_alphas_are_off_and_refused_by_the_mixer():
    cfg = ImageTransformConfig()
    assert not cfg.mixes and ImageTransformConfig(cutmix=0.5).mixes
    with pytest.raises(ValueError, match="mixup and cutmix are both 0"):
        BatchMix(cfg, C)
    with pytest.raises(ValueError, match="mixup"):
        ImageTransformConfig(mixup=-0.1)


def _digits_recipe(out, **image) -> dict:
    """Digits at 40x40 (MobileNetV2 ends at 2x2, so BatchNorm works on one image), 20 steps."""
    return {"task": "image_classification", "model": {"name": "mobilenet-v2", "pretrained": True},
            "data": {"name": "digits", "max_train_samples": 160, "max_eval_samples": 80,
                     "image": {"size": 40, "augment": "none", "hflip": False, **image}},
            "methods": ["full"],
            "train": {"epochs": 2, "batch_size": 16, "lr": 1e-3, "progress": False, "threads": 1,
                      "label_smoothing": 0.1},
            "seed": 0, "output_dir": str(out)}


def test_the_task_mixes_training_batches_only(mobilenet_weights, tmp_path):
    from tailorkit.recipe import recipe_from_dict
    from tailorkit.tasks import TASKS

    task = TASKS["image_classification"]
    setup = task.prepare(recipe_from_dict(_digits_recipe(tmp_path / "r", mixup=0.4, cutmix=1.0)), tmp_path)
    assert isinstance(setup.splits["train"].mix, BatchMix)
    torch.manual_seed(0)
    assert setup.splits["train"].collate(list(range(8)))["labels"].shape == (8, 10)
    for name in ("validation", "test"):  # never mixed: the evaluation transform, hard labels
        split = setup.splits[name]
        batch = split.collate(list(range(8)))
        assert split.mix is None and batch["labels"].dtype == torch.int64
        evaluation = ImageTransform(split.transform.config)
        expected = torch.stack([evaluation(split.images.images[i]) for i in range(8)])
        assert torch.equal(batch["pixel_values"], expected)
    plain = _digits_recipe(tmp_path / "o", augment="basic", hflip=True)
    off = task.prepare(recipe_from_dict(plain), tmp_path)
    train = off.splits["train"]
    assert train.mix is None  # alpha 0: no mixer; the batch is bit-identical to the transforms' own
    torch.manual_seed(0)
    batch = train.collate(list(range(8)))
    torch.manual_seed(0)
    expected = torch.stack([train.transform(train.images.images[i]) for i in range(8)])
    assert train.transform.train and torch.equal(batch["pixel_values"], expected)
    assert torch.equal(batch["labels"], torch.as_tensor(train.targets[:8]))
    # static int8 calibrates on the training images unmixed
    from tailorkit.compress.quantize_static import _calibration

    train = setup.splits["train"]
    torch.manual_seed(0)
    calibrated = next(_calibration(train, 1))
    torch.manual_seed(0)
    expected = torch.stack([train.transform(train.images.images[i]) for i in range(len(calibrated))])
    assert torch.equal(calibrated, expected) and train.mix is not None
    fixed = recipe_from_dict(_digits_recipe(tmp_path / "f", mixup=0.4))
    features = task.prepare(fixed, tmp_path, augment=False)
    assert features.splits["train"].mix is None  # fixed inputs (cached features) are never mixed


def test_training_with_mixup_and_cutmix_lowers_the_loss_and_resumes_exactly(
        mobilenet_weights, tmp_path, resumed_matches_uninterrupted):
    recipe = _digits_recipe(tmp_path / "mix", mixup=0.4, cutmix=1.0)
    recipe["train"]["checkpoint_steps"] = 4
    assert resumed_matches_uninterrupted(recipe, crash_at_step=7) <= 1e-6
    records = [json.loads(line) for line in (tmp_path / "mix" / "metrics.jsonl").open()]
    train = [r["loss"] for r in records if r["kind"] == "train"]
    evals = [r["loss"] for r in records if r["kind"] == "eval"]
    assert len(train) == 20 and np.mean(train[-5:]) < np.mean(train[:5])
    summary = json.loads((tmp_path / "mix" / "summary.json").read_text())
    assert evals[-1] < np.log(10) and summary["test"]["accuracy"] > 0.3  # chance is 0.1


def test_a_mixing_student_distils_from_a_teacher_that_did_not_mix(mobilenet_weights, tmp_path):
    """The teacher scores the student's mixed batches; mixing is the student's training choice,
    so it does not count as reading images differently (a different size still does)."""
    from tailorkit import api
    from tailorkit.errors import TailorError
    from tailorkit.recipe import recipe_from_dict

    teacher = _digits_recipe(tmp_path / "teacher")
    teacher["train"]["epochs"] = 1
    teacher_run = api.train(recipe_from_dict(teacher))
    student = _digits_recipe(tmp_path / "student", mixup=0.4)
    student["train"]["epochs"] = 1
    student["methods"] = [{"distill": {"teacher": str(teacher_run), "alpha": 0.5}}]
    summary = json.loads((api.train(recipe_from_dict(student)) / "summary.json").read_text())
    assert summary["distill"]["teacher"] == str(teacher_run) and summary["steps"] == 10
    other = _digits_recipe(tmp_path / "other", mixup=0.4, size=48)
    other["methods"] = student["methods"]
    with pytest.raises(TailorError, match="the same data.image settings"):
        api.train(recipe_from_dict(other))
