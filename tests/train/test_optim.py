"""Optimisers, LR schedules with warmup, weight-decay groups, accumulation, clipping, penalties."""

from __future__ import annotations

import math

import pytest
import torch

from tailorkit.config import TrainConfig
from tailorkit.train.losses import penalty
from tailorkit.train.optim import build_optimizer, build_scheduler, lr_factor

TOTAL, WARMUP = 20, 4


def _factors(**cfg) -> list[float]:
    c = TrainConfig(warmup_steps=WARMUP, **cfg)
    return [lr_factor(step, TOTAL, c) for step in range(TOTAL + 1)]


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine", "step", "polynomial"])
def test_warmup_rises_linearly_to_the_peak(schedule):
    f = _factors(schedule=schedule)
    warm = f[:WARMUP]
    assert warm == pytest.approx([(s + 1) / (WARMUP + 1) for s in range(WARMUP)])
    assert all(a < b for a, b in zip(warm, warm[1:], strict=False)) and warm[-1] < 1.0
    assert f[WARMUP] == pytest.approx(1.0)  # the schedule proper starts at the peak


def test_constant():
    assert _factors(schedule="constant")[WARMUP:] == [1.0] * (TOTAL - WARMUP + 1)


def test_linear_decays_to_zero():
    f = _factors(schedule="linear")
    expected = [1 - (s - WARMUP) / (TOTAL - WARMUP) for s in range(WARMUP, TOTAL + 1)]
    assert f[WARMUP:] == pytest.approx(expected)
    assert f[TOTAL] == 0.0


def test_cosine_half_way_is_half():
    f = _factors(schedule="cosine")
    mid = WARMUP + (TOTAL - WARMUP) // 2
    assert f[mid] == pytest.approx(0.5)
    assert f[TOTAL] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(f[WARMUP:], f[WARMUP + 1 :], strict=False))
    # cosine is flatter than linear near the peak and steeper in the middle
    assert f[WARMUP + 2] > _factors(schedule="linear")[WARMUP + 2]


def test_step_decays_by_gamma_every_step_size():
    f = _factors(schedule="step", step_size=5, gamma=0.5)
    assert f[WARMUP:] == pytest.approx([1.0] * 5 + [0.5] * 5 + [0.25] * 5 + [0.125] * 2)


def test_polynomial_power():
    quad = _factors(schedule="polynomial", power=2.0)
    linear = _factors(schedule="linear")
    assert quad[WARMUP:] == pytest.approx([x ** 2 for x in linear[WARMUP:]])
    assert _factors(schedule="polynomial", power=1.0) == pytest.approx(linear)


def test_warmup_ratio_and_steps_precedence():
    c = TrainConfig(schedule="constant", warmup_ratio=0.25)
    assert [lr_factor(s, 20, c) for s in range(6)] == pytest.approx([1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1])
    c = TrainConfig(schedule="constant", warmup_ratio=0.25, warmup_steps=0)
    assert lr_factor(0, 20, c) == 1.0


def test_scheduler_drives_every_group(make_handle):
    cfg = TrainConfig(lr=0.1, schedule="linear", warmup_steps=2)
    handle = make_handle()
    optimizer = build_optimizer(handle, cfg, {"classifier.weight": 0.5})
    scheduler = build_scheduler(optimizer, 10, cfg)
    seen = []
    for _ in range(10):
        seen.append(sorted({round(g["lr"], 10) for g in optimizer.param_groups}))
        optimizer.step()
        scheduler.step()
    for step, lrs in enumerate(seen):
        f = lr_factor(step, 10, cfg)
        assert lrs == sorted({round(0.1 * f, 10), round(0.05 * f, 10)})


# -- optimisers -------------------------------------------------------------------------------------

def _groups_by_name(handle, optimizer) -> dict[str, dict]:
    names = {id(p): n for n, p in handle.named_parameters()}
    return {names[id(p)]: g for g in optimizer.param_groups for p in g["params"]}


def test_adamw_hyperparameters(make_handle):
    handle = make_handle()
    opt = build_optimizer(handle, TrainConfig(lr=3e-4, betas=(0.8, 0.95), weight_decay=0.05), {})
    assert type(opt) is torch.optim.AdamW
    assert opt.defaults["betas"] == (0.8, 0.95) and opt.defaults["lr"] == 3e-4
    assert {g["weight_decay"] for g in opt.param_groups} == {0.0, 0.05}
    assert {g["lr"] for g in opt.param_groups} == {3e-4}


def test_adam_is_not_adamw(make_handle):
    opt = build_optimizer(make_handle(), TrainConfig(optimizer="adam", weight_decay=0.1), {})
    assert type(opt) is torch.optim.Adam
    assert {g["weight_decay"] for g in opt.param_groups} == {0.0, 0.1}


@pytest.mark.parametrize("nesterov", [True, False])
def test_sgd_momentum_and_nesterov(make_handle, nesterov):
    opt = build_optimizer(make_handle(), TrainConfig(optimizer="sgd", lr=0.1, momentum=0.8,
                                                     nesterov=nesterov), {})
    assert type(opt) is torch.optim.SGD
    assert opt.defaults["momentum"] == 0.8 and opt.defaults["nesterov"] is nesterov


def test_no_weight_decay_on_biases_and_layer_norms(make_handle):
    handle = make_handle()
    by_name = _groups_by_name(handle, build_optimizer(handle, TrainConfig(weight_decay=0.01), {}))
    assert set(by_name) == {n for n, _ in handle.named_parameters()}  # frozen ones included
    for name, group in by_name.items():
        exempt = name.endswith(".bias") or "LayerNorm" in name
        assert group["weight_decay"] == (0.0 if exempt else 0.01), name
    assert by_name["bert.embeddings.word_embeddings.weight"]["weight_decay"] == 0.01
    assert by_name["bert.encoder.layer.0.attention.self.query.weight"]["weight_decay"] == 0.01


def test_lr_scales_make_their_own_groups(make_handle):
    handle = make_handle()
    scales = {n: 0.5 ** (3 - handle.depth(n)) for n, _ in handle.named_parameters()}
    by_name = _groups_by_name(handle, build_optimizer(handle, TrainConfig(lr=1.0), scales))
    assert by_name["classifier.weight"]["lr"] == 1.0
    assert by_name["bert.encoder.layer.1.output.dense.weight"]["lr"] == 0.5
    assert by_name["bert.encoder.layer.0.output.dense.weight"]["lr"] == 0.25
    assert by_name["bert.embeddings.word_embeddings.weight"]["lr"] == 0.125
    assert by_name["bert.embeddings.LayerNorm.weight"]["weight_decay"] == 0.0


# -- through the training step ----------------------------------------------------------------------

def _no_dropout(trainer) -> None:
    for module in trainer.handle.model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def _recipe(tiny_recipe, tmp_path, name, **train) -> dict:
    return {**tiny_recipe, "output_dir": str(tmp_path / name),
            "train": {**tiny_recipe["train"], "length_grouping": False, "schedule": "constant", **train}}


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_accumulating_k_batches_equals_one_big_batch(tiny_recipe, tmp_path, make_trainer, optimizer):
    """k micro-batches of b (each padded to its own length) step exactly like one batch of k*b."""
    train = {"optimizer": optimizer, "momentum": 0.0, "lr": 0.5 if optimizer == "sgd" else 1e-3,
             "max_grad_norm": None, "epochs": 1}
    small = make_trainer(_recipe(tiny_recipe, tmp_path, "small", batch_size=4, grad_accum=3, **train))
    big = make_trainer(_recipe(tiny_recipe, tmp_path, "big", batch_size=12, grad_accum=1, **train))
    n = len(big.train_data)
    assert small.total_steps == big.total_steps == math.ceil(n / 12) >= 3
    start = {k: v.clone() for k, v in big.handle.model.state_dict().items()}
    for trainer in (small, big):
        _no_dropout(trainer)
        trainer.fit()
    a, b = small.handle.model.state_dict(), big.handle.model.state_dict()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    moved = max((a[k] - start[k]).abs().max().item() for k in a)
    assert worst < 1e-5 < moved, (worst, moved)
    losses = [_train_losses(t) for t in (small, big)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def _train_losses(trainer) -> list[float]:
    import json

    lines = (trainer.run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]


def _grad_norms(trainer) -> list[float]:
    """Record the total gradient norm the optimiser sees at each step."""
    norms: list[float] = []

    def before_step(optimizer, args, kwargs):
        grads = [p.grad for p in trainer.handle.model.parameters() if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    trainer.optimizer.register_step_pre_hook(before_step)
    return norms


def test_gradient_clipping_bounds_the_norm(tiny_recipe, tmp_path, make_trainer):
    clipped = make_trainer(_recipe(tiny_recipe, tmp_path, "clip", max_grad_norm=0.05, max_steps=4))
    free = make_trainer(_recipe(tiny_recipe, tmp_path, "free", max_grad_norm=None, max_steps=4))
    clipped_norms, free_norms = _grad_norms(clipped), _grad_norms(free)
    clipped.fit()
    free.fit()
    assert len(clipped_norms) == len(free_norms) == 4
    assert max(clipped_norms) <= 0.05 * (1 + 1e-4)
    assert min(free_norms) > 0.05  # so the bound above was clipping's doing


def test_penalty_values():
    a = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    b = torch.nn.Parameter(torch.tensor([[3.0]]))
    assert penalty([a, b], l1=0.1, l2=0.0).item() == pytest.approx(0.1 * 6)
    assert penalty([a, b], l1=0.0, l2=0.01).item() == pytest.approx(0.01 * 14)
    assert penalty([a, b], l1=0.1, l2=0.01).item() == pytest.approx(0.6 + 0.14)
    assert penalty([a, b], 0.0, 0.0) == 0.0


@pytest.mark.parametrize(("l1", "l2", "accum"), [(1e-4, 0.0, 1), (0.0, 1e-3, 1), (1e-4, 1e-3, 2)])
def test_step_loss_includes_the_penalty_once(tiny_recipe, tmp_path, make_trainer, l1, l2, accum):
    base = make_trainer(_recipe(tiny_recipe, tmp_path, "base", grad_accum=accum))
    pen = make_trainer(_recipe(tiny_recipe, tmp_path, "pen", grad_accum=accum, l1=l1, l2=l2))
    for t in (base, pen):
        _no_dropout(t)
    group = [list(range(0, 8)), list(range(8, 16))][:accum]
    trainable = [p for p in pen.handle.model.parameters() if p.requires_grad]
    expected = penalty(trainable, l1, l2).item()
    assert expected > 0
    difference = pen._step(group, trainable) - base._step(group, trainable)
    assert difference == pytest.approx(expected, rel=1e-4)


def test_l2_penalty_shrinks_weights(tiny_recipe, tmp_path, make_trainer):
    """A large L2 term pulls trainable weights toward zero compared with no penalty."""
    runs = {}
    for name, l2 in (("plain", 0.0), ("l2", 0.05)):
        t = make_trainer(_recipe(tiny_recipe, tmp_path, name, l2=l2, weight_decay=0.0, max_steps=5))
        _no_dropout(t)
        t.fit()
        runs[name] = math.sqrt(sum(float(p.detach().pow(2).sum()) for p in t.handle.model.parameters()))
    assert runs["l2"] < runs["plain"]


def test_warmup_longer_than_the_run_is_said(make_trainer, tiny_recipe, capsys):
    make_trainer({**tiny_recipe, "train": {**tiny_recipe["train"], "max_steps": 10, "warmup_steps": 100,
                                           "lr": 1e-4}})
    assert ("warning: train.warmup_steps is 100 but the run has 10 steps: the learning rate rises to 9.9e-06 "
            "and never reaches train.lr (0.0001)") in capsys.readouterr().err
    make_trainer({**tiny_recipe, "train": {**tiny_recipe["train"], "max_steps": 10, "warmup_steps": 9}})
    assert "warmup_steps" not in capsys.readouterr().err
