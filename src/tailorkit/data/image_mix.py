"""mixup and CutMix: whole training batches mixed pairwise, with soft targets to match.

- mixup (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization"): each image becomes
  lam * x_i + (1 - lam) * x_j and its target lam * y_i + (1 - lam) * y_j, lam ~ Beta(alpha, alpha).
- CutMix (Yun et al. 2019, "CutMix: Regularization Strategy to Train Strong Classifiers with
  Localizable Features"): a box of image j is pasted into image i; lam is the share of image i
  left, after the box is clipped to the image, so the targets match the pixels exactly.

As timm's `Mixup` in batch mode: one lam per batch, a batch is mixed with probability `mix_prob`,
and with both on, CutMix is chosen with probability `switch_prob`. The partner j is a random
permutation of the batch. Every draw of a batch comes from one number taken from torch's RNG
(the global one unless a generator is given), which checkpoints save, so a resumed run mixes
exactly the batches the uninterrupted run would have. Only the training split is mixed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from tailorkit.config.data import ImageTransformConfig


def cut_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a box of about (1 - lam) of the area, centred at a uniform
    random pixel and clipped to the image (so it may be smaller)."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
    left, right = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
    return int(top), int(bottom), int(left), int(right)


class BatchMix:
    """batch {"pixel_values", "labels"} -> the same batch mixed, its labels soft targets (B, C)."""

    def __init__(self, cfg: ImageTransformConfig, num_classes: int) -> None:
        if not cfg.mixes:
            raise ValueError("data.image: mixup and cutmix are both 0; nothing to mix")
        self.cfg, self.num_classes = cfg, num_classes

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None
                 ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        pixels, labels = batch["pixel_values"], batch["labels"]
        targets = F.one_hot(labels.long(), self.num_classes).to(torch.float32)
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (), generator=generator)))
        if rng.random() >= cfg.mix_prob:
            return {**batch, "labels": targets}
        use_cutmix = cfg.cutmix > 0 and (cfg.mixup == 0 or rng.random() < cfg.switch_prob)
        lam = float(rng.beta(cfg.cutmix, cfg.cutmix) if use_cutmix else rng.beta(cfg.mixup, cfg.mixup))
        partner = torch.from_numpy(rng.permutation(len(labels)))
        if use_cutmix:
            height, width = pixels.shape[-2:]
            top, bottom, left, right = cut_box(height, width, lam, rng)
            pixels = pixels.clone()
            pixels[..., top:bottom, left:right] = pixels[partner][..., top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / (height * width)
        else:
            pixels = lam * pixels + (1.0 - lam) * pixels[partner]
        mixed = lam * targets + (1.0 - lam) * targets[partner]
        return {**batch, "pixel_values": pixels, "labels": mixed}
