"""Read labelled images into one in-memory form, `ImageSet`, whatever they came as.

Sources: a folder with one sub-folder per class; a table (CSV, TSV, JSONL,
Parquet) of image paths and labels; a NumPy .npz file; a pair of IDX files (the
MNIST format); and the catalogue datasets (`tailorkit.data.image_catalogue.IMAGE_DATASETS`).

Every image is decoded here, up front, so a corrupt file fails before any model
is loaded, with a message naming it. `skip_bad=True` skips such files instead
and records each in `ImageSet.skipped`. Images keep their own size and channel
count (1 = grayscale, 3 = RGB); resizing and grayscale -> RGB happen in
`image_transforms`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tailorkit.data.idx import read_idx
from tailorkit.data.tables import read_table
from tailorkit.errors import TailorError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                  ".pbm")
GRAY_MODES = ("1", "L", "LA", "La")
# 8-bit colour modes Pillow converts to RGB faithfully; alpha is dropped, as torchvision does.
COLOUR_MODES = ("P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


@dataclass
class ImageSet:
    """Images with integer labels into `classes`.

    `images` is a list of uint8 arrays (H, W, C) with C = 1 or 3, or one array (N, H, W, C)
    when all share a size (catalogue, .npz, IDX); index both the same way.
    """

    source: str  # the folder, file or catalogue name, for messages
    images: list[np.ndarray] | np.ndarray
    labels: np.ndarray  # int64, one per image
    classes: list[str]
    ids: list[str] | None = None  # per image: its path (files); None: "source[i]"
    skipped: list[str] = field(default_factory=list)  # "path: reason" per bad image skipped

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def name_of(self, index: int) -> str:
        """Where image `index` came from, for messages."""
        return self.ids[index] if self.ids is not None else f"{self.source}[{index}]"

    def take(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        """A subset (e.g. one split) that keeps the class list and the source names."""
        idx = np.asarray(indices, dtype=np.int64)
        images = (self.images[idx] if isinstance(self.images, np.ndarray)
                  else [self.images[i] for i in idx])
        ids = ([self.ids[i] for i in idx] if self.ids is not None
               else [f"{self.source}[{i}]" for i in idx])
        return ImageSet(self.source, images, self.labels[idx], list(self.classes), ids)


# -- single images ------------------------------------------------------------------------------


class BadImage(Exception):
    """One unreadable image; the loaders turn it into a TailorError or a skip."""


class ImageTooLarge(BadImage):
    """An image past a pixel limit (the caller's, or Pillow's decompression-bomb limit)."""


def read_image(path: str | Path, shrink_to: int | None = None) -> np.ndarray:
    """uint8 (H, W, 1) or (H, W, 3), upright (EXIF orientation applied).

    `shrink_to` bounds the shorter side at load time (JPEGs decode directly at a reduced
    scale), so a folder of photos does not fill memory when the model sees 224 pixels.
    Raises BadImage with the reason.
    """
    path = Path(path)
    if not path.is_file():
        raise BadImage("file not found")
    if path.stat().st_size == 0:
        raise BadImage("empty file (0 bytes)")
    return _decode(path, shrink_to)


def decode_image(data: bytes, max_pixels: int | None = None) -> np.ndarray:
    """`read_image` for encoded bytes (e.g. a PNG or JPEG sent to the server); images of more
    than `max_pixels` pixels are refused from their header, before they are decoded."""
    if not data:
        raise BadImage("empty image (0 bytes)")
    return _decode(io.BytesIO(data), None, max_pixels)


def _decode(source: Path | io.BytesIO, shrink_to: int | None, max_pixels: int | None = None) -> np.ndarray:
    try:
        with Image.open(source) as image:
            if image.width == 0 or image.height == 0:
                raise BadImage(f"zero-size image ({image.width}x{image.height})")
            if max_pixels is not None and image.width * image.height > max_pixels:
                raise ImageTooLarge(f"{image.width}x{image.height} pixels; the limit is {max_pixels}")
            if shrink_to is not None and min(image.size) > shrink_to:
                scale = shrink_to / min(image.size)
                image.draft(image.mode, (int(image.width * scale), int(image.height * scale)))
            image.load()
            return _to_array(ImageOps.exif_transpose(image), shrink_to)
    except BadImage:
        raise
    except Image.DecompressionBombError:
        raise ImageTooLarge("larger than Pillow's decompression-bomb limit; downscale it") from None
    except UnidentifiedImageError:
        raise BadImage("not an image file Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as err:  # truncated or corrupt data
        raise BadImage(f"corrupt or truncated image ({err})") from None


def _to_array(image: Image.Image, shrink_to: int | None) -> np.ndarray:
    if image.mode in GRAY_MODES:
        image = image.convert("L")
    elif image.mode in COLOUR_MODES:
        image = image.convert("RGB")
    else:  # I, I;16, F: 16/32-bit samples; any scaling to 8 bits would be a guess
        raise BadImage(f"unsupported image mode {image.mode} (16/32-bit samples); save it as 8-bit "
                       "RGB or grayscale")
    if shrink_to is not None and min(image.size) > shrink_to:
        scale = shrink_to / min(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


class _Collector:
    """Reads images one by one; a bad one raises TailorError or, with skip_bad, is recorded."""

    def __init__(self, skip_bad: bool, shrink_to: int | None) -> None:
        self.skip_bad, self.shrink_to = skip_bad, shrink_to
        self.images: list[np.ndarray] = []
        self.labels: list[int] = []
        self.ids: list[str] = []
        self.skipped: list[str] = []

    def add(self, path: Path, label: int, where: str) -> None:
        """`where` names the image in messages (e.g. "table.csv: row 3: img.png")."""
        try:
            image = read_image(path, self.shrink_to)
        except BadImage as err:
            if not self.skip_bad:
                raise TailorError(f"{where}: {err}; fix or remove it, or skip bad images "
                                  "(skip_bad)") from None
            self.skipped.append(f"{where}: {err}")
            return
        self.images.append(image)
        self.labels.append(label)
        self.ids.append(str(path))

    def result(self, source: str, classes: list[str]) -> ImageSet:
        if not self.images:
            first = f"; first skipped: {self.skipped[0]}" if self.skipped else ""
            raise TailorError(f"{source}: no readable images ({len(self.skipped)} skipped){first}")
        return ImageSet(source, self.images, np.asarray(self.labels, dtype=np.int64), classes,
                        self.ids, self.skipped)


# -- labels ---------------------------------------------------------------------------------------


def _natural_key(name: str) -> tuple[int, float, str]:
    """Numeric class names sort as numbers (2 before 10), the rest alphabetically."""
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def class_names(values) -> list[str]:
    return sorted({str(v) for v in values}, key=_natural_key)


def _unknown_label(where: str, label: object, classes: list[str]) -> TailorError:
    shown = ", ".join(classes[:20]) + (" ..." if len(classes) > 20 else "")
    return TailorError(f"{where}: label {label!r} is not one of the training classes ({shown}); "
                       "fix the label or add the class to train")


# -- a folder per class ---------------------------------------------------------------------------


def image_files(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, sorted; hidden files and other types ignored."""
    files = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files += [Path(dirpath) / f for f in sorted(filenames)
                  if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return files


def load_image_folder(root: str | Path, *, classes: list[str] | None = None, skip_bad: bool = False,
                      shrink_to: int | None = None, field: str = "data.train") -> ImageSet:
    """`root/<class name>/**/<image>`: class names are the sub-folder names, sorted (numbers as
    numbers). `classes` fixes the list (a validation folder must use the train classes)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise TailorError(f"{field}: folder not found: {root}")
    folders = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
                     key=lambda d: _natural_key(d.name))
    if not folders:
        raise TailorError(f"{field}: {root} has no sub-folders; put the images of each class in a "
                          "sub-folder named after the class")
    if classes is None:
        classes = [d.name for d in folders]
    index = {name: i for i, name in enumerate(classes)}
    collector = _Collector(skip_bad, shrink_to)
    for folder in folders:
        if folder.name not in index:
            raise _unknown_label(f"{field}: {folder}", folder.name, classes)
        files = image_files(folder)
        if not files:
            raise TailorError(f"{field}: class folder {folder} has no image files "
                              f"({', '.join(IMAGE_SUFFIXES)}); add images or remove the folder")
        for file in files:
            collector.add(file, index[folder.name], str(file))
    return collector.result(str(root), classes)


# -- a table of paths and labels ------------------------------------------------------------------


def load_image_table(path: str | Path, *, image_column: str = "image", label_column: str = "label",
                     classes: list[str] | None = None, skip_bad: bool = False,
                     shrink_to: int | None = None, field: str = "data.train",
                     flags: dict[str, str] | None = None) -> ImageSet:
    """A CSV/TSV/JSONL/Parquet file with an image path and a label per row. Relative paths are
    relative to the table's own folder, so the table and its images move together. `flags`
    names the command-line flag that sets a column, where one does (`tailor eval`)."""
    path = Path(path).expanduser()
    frame = read_table(path, field)
    if isinstance(frame, dict):
        raise TailorError(f"{field}: {path} is a datasets folder; image tables must be CSV, TSV, "
                          "JSONL or Parquet files (or give a folder with one sub-folder per class)")
    for option, column in (("image_column", image_column), ("label_column", label_column)):
        if column not in frame.columns:
            raise TailorError(f"{path}: no column '{column}' (columns: "
                              f"{', '.join(map(str, frame.columns))}); " +
                              (f"name the right one with {flags[option]}" if flags and option in flags
                               else f"set {option} to the right one"))
    if len(frame) == 0:
        raise TailorError(f"{path}: has no rows")
    labels = frame[label_column]
    for column in (image_column, label_column):
        blank = frame[column].isna() | (frame[column].astype(str).str.strip() == "")
        if blank.any():
            row = int(np.flatnonzero(blank.to_numpy())[0]) + 1
            raise TailorError(f"{path}: row {row}: empty '{column}' ({int(blank.sum())} such rows); "
                              "fill or remove them")
    if classes is None:
        classes = class_names(labels)
    index = {name: i for i, name in enumerate(classes)}
    collector = _Collector(skip_bad, shrink_to)
    rows = zip(frame[image_column].tolist(), labels.tolist(), strict=True)
    for row, (image, label) in enumerate(rows, start=1):
        name = str(label)
        if name not in index:
            raise _unknown_label(f"{path}: row {row}", label, classes)
        file = Path(str(image).strip()).expanduser()
        file = file if file.is_absolute() else path.parent / file
        collector.add(file, index[name], f"{path}: row {row}: {file}")
    return collector.result(str(path), classes)


# -- arrays -----------------------------------------------------------------------------------------


def as_uint8_images(array: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W) or (N, H, W, 1 | 3) -> uint8 (N, H, W, C). Integers must lie in 0-255; floats in
    0-1 are scaled by 255 (other floats are ambiguous and refused)."""
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[3] not in (1, 3):
        raise TailorError(f"{where}: images must have shape (N, H, W), (N, H, W, 1) or (N, H, W, 3), "
                          f"got {array.shape}")
    if 0 in array.shape:
        raise TailorError(f"{where}: zero-size image array {array.shape}")
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        if array.min() < 0 or array.max() > 255:
            raise TailorError(f"{where}: integer images must lie in 0-255, got {array.min()}-{array.max()}")
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise TailorError(f"{where}: float images must lie in 0-1 (they are scaled by 255); "
                              "store 0-255 pixels as uint8")
        return np.round(array * 255).astype(np.uint8)
    raise TailorError(f"{where}: images of dtype {array.dtype} are not supported; use uint8")


def _label_ids(values: np.ndarray, classes: list[str] | None, where: str) -> tuple[np.ndarray, list[str]]:
    """Integer labels are class indices; string labels are class names."""
    if values.ndim != 1:
        raise TailorError(f"{where}: labels must be one-dimensional, got shape {values.shape}")
    if np.issubdtype(values.dtype, np.integer):
        if len(values) and values.min() < 0:
            raise TailorError(f"{where}: label {values.min()} is negative; integer labels are class "
                              "indices from 0")
        top = int(values.max()) + 1 if len(values) else 0
        if classes is None:
            classes = [str(i) for i in range(top)]
        if top > len(classes):
            raise TailorError(f"{where}: label {top - 1} is out of range for {len(classes)} classes")
        return values.astype(np.int64), classes
    if values.dtype.kind in "US":
        names = values.astype(str).tolist()
        classes = classes if classes is not None else class_names(names)
        index = {name: i for i, name in enumerate(classes)}
        for i, name in enumerate(names):
            if name not in index:
                raise _unknown_label(f"{where}[{i}]", name, classes)
        return np.asarray([index[n] for n in names], dtype=np.int64), classes
    raise TailorError(f"{where}: labels must be integers (class indices) or strings (class names), "
                      f"got {values.dtype}")


def load_image_arrays(path: str | Path, *, classes: list[str] | None = None,
                      field: str = "data.train") -> ImageSet:
    """A .npz file (np.savez) with `images` (N, H, W[, C]) and `labels` (N,); optional `classes`,
    the class names that integer labels index. Read without pickle (safe on any file)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TailorError(f"{field}: file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (ValueError, OSError, EOFError) as err:
        raise TailorError(f"{field}: {path}: cannot read as .npz: {str(err).splitlines()[0]}") from None
    missing = [k for k in ("images", "labels") if k not in arrays]
    if missing:
        raise TailorError(f"{path}: no array '{missing[0]}' (arrays: {', '.join(arrays) or 'none'}); "
                          "save with np.savez(path, images=..., labels=...)")
    if "classes" in arrays and classes is None:
        classes = [str(c) for c in arrays["classes"].tolist()]
    images = as_uint8_images(arrays["images"], f"{path}: images")
    labels, classes = _label_ids(arrays["labels"], classes, f"{path}: labels")
    if len(labels) != len(images):
        raise TailorError(f"{path}: {len(images)} images but {len(labels)} labels")
    return ImageSet(str(path), images, labels, classes)


# -- IDX (MNIST format) -------------------------------------------------------------------------------

def load_idx(images_path: str | Path, labels_path: str | Path, *,
             classes: list[str] | None = None) -> ImageSet:
    """A pair of IDX files, images (N, H, W) and integer labels (N,), as MNIST ships them."""
    images = as_uint8_images(read_idx(images_path), str(images_path))
    labels, classes = _label_ids(read_idx(labels_path).astype(np.int64), classes, str(labels_path))
    if len(labels) != len(images):
        raise TailorError(f"{images_path}: {len(images)} images but {labels_path} has {len(labels)} labels")
    return ImageSet(str(images_path), images, labels, classes)


# -- one entry point --------------------------------------------------------------------------------


def load_image_file(path: str | Path, *, image_column: str = "image", label_column: str = "label",
                    classes: list[str] | None = None, skip_bad: bool = False,
                    shrink_to: int | None = None, field: str = "data.train",
                    flags: dict[str, str] | None = None) -> ImageSet:
    """One split from a folder of class folders, a .npz file, or a table of paths and labels.
    Catalogue datasets come with their own splits: `tailorkit.data.image_catalogue.load_catalogue_images`."""
    path = Path(path).expanduser()
    if path.is_dir():
        return load_image_folder(path, classes=classes, skip_bad=skip_bad, shrink_to=shrink_to,
                                 field=field)
    if path.suffix.lower() == ".npz":
        return load_image_arrays(path, classes=classes, field=field)
    return load_image_table(path, image_column=image_column, label_column=label_column,
                            classes=classes, skip_bad=skip_bad, shrink_to=shrink_to, field=field, flags=flags)

