"""Optimisers and learning-rate schedules, built from TrainConfig."""

from __future__ import annotations

import math

import torch

from tailorkit.config.train import TrainConfig
from tailorkit.models.handle import ModelHandle


def _no_decay(name: str, param: torch.nn.Parameter) -> bool:
    """Biases and norm weights (1-D) are not decayed, as in BERT and the HF Trainer."""
    return param.ndim < 2


def build_optimizer(
    handle: ModelHandle, cfg: TrainConfig, lr_scales: dict[str, float]
) -> torch.optim.Optimizer:
    """All float parameters go in, frozen ones too: they get no gradient, so the optimiser
    skips them and leaves them bit-identical, and unfreezing later needs no rebuild. (A 4-bit
    base's packed weights are integers and can never train.)

    The fused implementations update every tensor in one kernel: for full fine-tuning of
    MiniLM-L6 the AdamW step took 13-19 ms instead of 136-164 ms (bench/RESULTS.md)."""
    groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
    for name, param in handle.named_parameters():
        if not param.dtype.is_floating_point:
            continue
        key = (lr_scales.get(name, 1.0), _no_decay(name, param))
        groups.setdefault(key, []).append(param)
    param_groups = [
        {"params": params, "lr": cfg.peak_lr * scale, "weight_decay": 0.0 if no_decay else cfg.weight_decay}
        for (scale, no_decay), params in sorted(groups.items())
    ]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=cfg.peak_lr, betas=cfg.betas, fused=True)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(param_groups, lr=cfg.peak_lr, betas=cfg.betas, fused=True)
    return torch.optim.SGD(param_groups, lr=cfg.peak_lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           fused=True)


def lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """Multiplier of the base LR after `step` optimiser steps: linear warmup, then the schedule."""
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else int(cfg.warmup_ratio * total)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    match cfg.schedule:
        case "constant":
            return 1.0
        case "linear":
            return 1.0 - progress
        case "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        case "step":
            return cfg.gamma ** ((step - warmup) // cfg.step_size)
        case "polynomial":
            return (1.0 - progress) ** cfg.power
    raise AssertionError(cfg.schedule)


def build_scheduler(
    optimizer: torch.optim.Optimizer, total_steps: int, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, cfg)
    )
