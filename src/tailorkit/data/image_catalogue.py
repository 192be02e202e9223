"""The catalogue's image datasets: each reader returns named splits of `ImageSet`s.

Images are arrays, not text/label tables, so they have their own catalogue beside
`tailorkit.sources` (which holds the text datasets and the models).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tailorkit.data.images import ImageSet, load_idx
from tailorkit.errors import TailorError


@dataclass(frozen=True)
class DebianData:
    """Data that a Debian package installs into a fixed folder."""

    name: str
    package: str
    folder: Path
    description: str

    def root(self) -> Path:
        if not self.folder.is_dir():
            raise TailorError(
                f"'{self.name}' needs the Debian package {self.package} (files in {self.folder}); "
                f"install it with: apt-get install -y {self.package}"
            )
        return self.folder


@dataclass(frozen=True)
class ImageCatalogueDataset:
    name: str
    description: str
    reader: Callable[[Path | None], dict[str, ImageSet]]  # gets the package's folder, if any
    debian: DebianData | None = None  # None: ships inside a Python dependency

    def load(self) -> dict[str, ImageSet]:
        return self.reader(self.debian.root() if self.debian else None)


DIGIT_CLASSES = [str(d) for d in range(10)]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]


def _digits(_: Path | None) -> dict[str, ImageSet]:
    """scikit-learn's copy of the UCI digits: 8x8 pixels with 17 grey levels (0-16), scaled to 0-255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)[..., None]
    return {"train": ImageSet("digits", images, bunch.target.astype(np.int64), list(DIGIT_CLASSES))}


def _fashion_mnist(root: Path | None) -> dict[str, ImageSet]:
    """Zalando's official split: 60,000 train and 10,000 test images."""

    assert root is not None
    splits = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images, labels = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
        if not (images.is_file() and labels.is_file()):
            raise TailorError(f"'fashion-mnist': {images.name} or {labels.name} is missing in {root}; "
                              "reinstall it with: apt-get install --reinstall -y dataset-fashion-mnist")
        data = load_idx(images, labels, classes=list(FASHION_MNIST_CLASSES))
        data.source = f"fashion-mnist:{split}"
        splits[split] = data
    return splits


IMAGE_DATASETS: dict[str, ImageCatalogueDataset] = {
    "digits": ImageCatalogueDataset(
        "digits", "1,797 8x8 grayscale handwritten digits, 10 classes (scikit-learn)", _digits),
    "fashion-mnist": ImageCatalogueDataset(
        "fashion-mnist", "70,000 28x28 grayscale clothing images, 10 classes (60,000 train, 10,000 test)",
        _fashion_mnist,
        DebianData("fashion-mnist", "dataset-fashion-mnist", Path("/usr/share/datasets/fashion-mnist"),
                   "Fashion-MNIST IDX files")),
}


def load_catalogue_images(name: str) -> dict[str, ImageSet]:
    """Named splits ("train", and "test" where the dataset defines one)."""
    if name not in IMAGE_DATASETS:
        raise TailorError(
            f"data.name: unknown catalogue image dataset '{name}' "
            f"(catalogue: {', '.join(IMAGE_DATASETS)}); for your own images use data.train"
        )
    return IMAGE_DATASETS[name].load()
