"""Image classification data: catalogue or files -> train/validation/test ImageSets -> batches.

Splits follow the text rules: given files, or seeded stratified fractions of the train set
(a catalogue's own test split is kept). Training augmentation (and mixup/CutMix, image_mix.py)
draws from the global torch RNG, which checkpoints save, so a resumed run sees the same crops,
flips and mixes.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from tailorkit.config.data import DataConfig
from tailorkit.data.image_catalogue import load_catalogue_images
from tailorkit.data.image_mix import BatchMix
from tailorkit.data.image_transforms import ImageTransform
from tailorkit.data.images import ImageSet, load_image_file
from tailorkit.data.quality import DataQuality
from tailorkit.errors import TailorError


class EncodedImages:
    """A split ready for the training loop: fixed-size tensors, so every 'length' is 1. With
    `mix` (the training split only), each batch is mixed and its labels are soft targets."""

    def __init__(self, images: ImageSet, transform: ImageTransform, mix: BatchMix | None = None) -> None:
        self.images, self.transform, self.mix = images, transform, mix
        self.targets = images.labels
        self.lengths = np.ones(len(images), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def without_mix(self) -> EncodedImages:
        """The same images and transform, never mixed (what a calibration pass should see)."""
        return EncodedImages(self.images, self.transform)

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        pixels = torch.stack([self.transform(self.images.images[i]) for i in indices])
        batch = {"pixel_values": pixels, "labels": torch.as_tensor(self.targets[indices])}
        return self.mix(batch) if self.mix is not None else batch


def prepare_image_data(cfg: DataConfig, quality: DataQuality | None = None
                       ) -> tuple[dict[str, ImageSet], list[str], dict[str, int]]:
    """The splits, the class names, and how many unreadable images each given file skipped. With
    `quality` (a run's data stage), `data.clean` cleans the carved splits and `quality` records it."""
    if cfg.name is not None:

        splits = load_catalogue_images(cfg.name)
    else:
        splits = {"train": _load(cfg, cfg.train, "data.train", None)}
        classes = splits["train"].classes
        for name in ("validation", "test"):
            if getattr(cfg, name):
                splits[name] = _load(cfg, getattr(cfg, name), f"data.{name}", classes)
    skipped = {name: split.num_skipped for name, split in splits.items()}
    train = splits["train"]
    total = len(train)
    for name in ("test", "validation"):
        if name not in splits:
            train, splits[name] = _carve(train, total, getattr(cfg.split, name), cfg.split, name)
    splits["train"] = train
    if quality is not None:
        splits = quality.clean_images(splits)
        quality.write()
    limits = {"train": cfg.max_train_samples, "validation": cfg.max_eval_samples,
              "test": cfg.max_eval_samples}
    splits = {name: _subset(split, limits[name], cfg.split.seed) for name, split in splits.items()}
    return splits, train.classes, skipped


def _load(cfg: DataConfig, path: str, field: str, classes: list[str] | None) -> ImageSet:
    images = load_image_file(path, image_column=cfg.image_column, label_column=cfg.label_column,
                             classes=classes, skip_bad=cfg.skip_bad, field=field)
    if images.num_skipped:
        print(f"{field}: skipped {images.num_skipped} unreadable images (first: {images.skipped[0]})",
              file=sys.stderr)
    return images


def _carve(images: ImageSet, total: int, fraction: float, split, name: str) -> tuple[ImageSet, ImageSet]:
    from sklearn.model_selection import train_test_split

    n_out = int(total * fraction)
    if n_out == 0 or n_out >= len(images):
        raise TailorError(f"{images.source}: the {name} split is empty with data.split.{name}="
                          f"{fraction}; give more images, a larger fraction or data.{name}")
    index = np.arange(len(images))
    stratify = images.labels if split.stratify and np.bincount(images.labels).min() >= 2 else None
    keep, out = train_test_split(index, test_size=n_out, random_state=split.seed, stratify=stratify)
    return images.take(np.sort(keep)), images.take(np.sort(out))


def _subset(images: ImageSet, limit: int | None, seed: int) -> ImageSet:
    if limit is None or len(images) <= limit:
        return images
    chosen = np.random.default_rng(seed).choice(len(images), size=limit, replace=False)
    return images.take(np.sort(chosen))
