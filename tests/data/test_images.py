"""Image loaders: class folders, tables of paths, .npz arrays, IDX files and the catalogue, all to
one ImageSet; bad images fail naming the file, or are skipped and counted."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tailorkit.data import image_catalogue as catalogue
from tailorkit.data.idx import read_idx
from tailorkit.data.images import (
    BadImage,
    load_idx,
    load_image_arrays,
    load_image_file,
    load_image_folder,
    load_image_table,
    read_image,
)
from tailorkit.errors import TailorError

# -- single images and bad files ------------------------------------------------------------------


def test_modes_become_gray_or_rgb(write_image):
    assert read_image(write_image("rgb.png", "RGB")).shape == (10, 12, 3)
    assert read_image(write_image("gray.png", "L")).shape == (10, 12, 1)
    assert read_image(write_image("bw.bmp", "1")).shape == (10, 12, 1)
    assert read_image(write_image("alpha.png", "RGBA")).shape == (10, 12, 3)
    assert read_image(write_image("palette.gif", "P")).shape == (10, 12, 3)
    assert read_image(write_image("photo.jpg", "RGB")).dtype == np.uint8


def test_pixels_are_kept(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    assert np.array_equal(read_image(tmp_path / "x.png"), pixels)


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.new("RGB", (40, 20), "red").save(tmp_path / "phone.jpg", exif=exif)
    assert read_image(tmp_path / "phone.jpg").shape == (40, 20, 3)


def test_shrink_to_bounds_the_shorter_side(write_image):
    image = read_image(write_image("big.jpg", size=(300, 200)), shrink_to=50)
    assert image.shape == (50, 75, 3)
    assert read_image(write_image("small.png", size=(30, 20)), shrink_to=50).shape == (20, 30, 3)


def _truncated_png(path: Path) -> Path:
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _bad_files(folder: Path) -> dict[str, str]:
    """One corrupt file of each kind -> the reason read_image gives."""
    folder.mkdir(parents=True, exist_ok=True)
    _truncated_png(folder / "truncated.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image at all")
    Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16)).save(folder / "deep.png")
    return {"truncated.png": "corrupt or truncated", "empty.jpg": "empty file",
            "notes.png": "not an image file", "deep.png": "unsupported image mode I"}


def test_bad_images_say_why(tmp_path):
    for name, reason in _bad_files(tmp_path).items():
        with pytest.raises(BadImage, match=reason):
            read_image(tmp_path / name)
    with pytest.raises(BadImage, match="file not found"):
        read_image(tmp_path / "absent.png")


# -- a folder per class ---------------------------------------------------------------------------


@pytest.fixture
def class_folder(write_image, tmp_path) -> Path:
    for i in range(3):
        write_image(f"pets/cat/c{i}.png", seed=i)
    write_image("pets/dog/d0.jpg", "L", seed=10)
    write_image("pets/dog/more/d1.png", seed=11)  # nested folders belong to their class
    (tmp_path / "pets/dog/readme.txt").write_text("ignored: not an image type")
    write_image("pets/dog/.hidden.png")
    write_image("pets/.cache/x.png")
    return tmp_path / "pets"


def test_folder_per_class(class_folder):
    data = load_image_folder(class_folder)
    assert data.classes == ["cat", "dog"] and len(data) == 5
    assert data.labels.tolist() == [0, 0, 0, 1, 1]
    assert data.images[3].shape == (10, 12, 1) and data.images[4].shape == (10, 12, 3)
    assert data.name_of(4).endswith("dog/more/d1.png") and data.num_skipped == 0
    assert load_image_file(class_folder).labels.tolist() == data.labels.tolist()


def test_folder_with_the_train_classes(class_folder):
    data = load_image_folder(class_folder, classes=["bird", "cat", "dog"])
    assert data.labels.tolist() == [1, 1, 1, 2, 2]
    with pytest.raises(TailorError, match=r"dog: label 'dog' is not one of the training classes \(cat\)"):
        load_image_folder(class_folder, classes=["cat"])


def test_folder_class_names_sort_as_numbers(write_image, tmp_path):
    for name in ("10", "2", "1"):
        write_image(f"digits/{name}/a.png")
    assert load_image_folder(tmp_path / "digits").classes == ["1", "2", "10"]


def test_folder_problems_name_the_folder(write_image, tmp_path):
    with pytest.raises(TailorError, match=r"data\.train: folder not found: .*nowhere"):
        load_image_folder(tmp_path / "nowhere")
    write_image("flat/a.png")
    with pytest.raises(TailorError, match=r"flat has no sub-folders; put the images of each class"):
        load_image_folder(tmp_path / "flat")
    write_image("sparse/cat/a.png")
    (tmp_path / "sparse/dog").mkdir()
    with pytest.raises(TailorError, match=r"class folder .*sparse/dog has no image files"):
        load_image_folder(tmp_path / "sparse")


def test_bad_image_in_a_folder_fails_or_is_skipped(class_folder):
    _bad_files(class_folder / "cat")
    with pytest.raises(TailorError) as info:
        load_image_folder(class_folder)
    message = str(info.value)
    assert "cat/deep.png: unsupported image mode" in message and "skip_bad" in message
    data = load_image_folder(class_folder, skip_bad=True)
    assert len(data) == 5 and data.num_skipped == 4
    assert any("truncated.png: corrupt or truncated" in s for s in data.skipped)


def test_nothing_readable_is_an_error(tmp_path):
    _bad_files(tmp_path / "bad" / "x")
    with pytest.raises(TailorError, match=r"bad: no readable images \(4 skipped\); first skipped: "):
        load_image_folder(tmp_path / "bad", skip_bad=True)


# -- a table of paths and labels ------------------------------------------------------------------


@pytest.fixture
def image_table(write_image, tmp_path) -> Path:
    rows = []
    for i in range(4):
        write_image(f"data/img/{i}.png", seed=i)
        rows.append({"file": f"img/{i}.png", "kind": ["shoe", "bag"][i % 2]})
    path = tmp_path / "data" / "labels.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_table_paths_are_relative_to_the_table(image_table, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # not the table's folder
    data = load_image_table(image_table, image_column="file", label_column="kind")
    assert data.classes == ["bag", "shoe"] and data.labels.tolist() == [1, 0, 1, 0]
    assert data.name_of(2) == str(image_table.parent / "img" / "2.png")


def test_jsonl_table_with_absolute_paths(write_image, tmp_path):
    a, b = write_image("a.png"), write_image("b.png", "L")
    path = tmp_path / "sub" / "t.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(json.dumps({"image": str(p), "label": n}) for p, n in ((a, 3), (b, 1))))
    data = load_image_file(path)
    assert data.classes == ["1", "3"] and data.labels.tolist() == [1, 0]


def test_table_problems_name_row_and_column(image_table):
    with pytest.raises(TailorError, match=r"labels\.csv: no column 'image' .*set image_column"):
        load_image_table(image_table, label_column="kind")
    frame = pd.read_csv(image_table)
    frame.loc[2, "kind"] = None
    frame.to_csv(image_table, index=False)
    with pytest.raises(TailorError, match=r"labels\.csv: row 3: empty 'kind'"):
        load_image_table(image_table, image_column="file", label_column="kind")
    frame.loc[2, "kind"] = "hat"
    frame.to_csv(image_table, index=False)
    with pytest.raises(TailorError, match=r"row 3: label 'hat' is not one of the training classes"):
        load_image_table(image_table, image_column="file", label_column="kind", classes=["bag", "shoe"])


def test_missing_or_corrupt_file_in_a_table(image_table):
    frame = pd.read_csv(image_table)
    frame.loc[1, "file"] = "img/absent.png"
    frame.to_csv(image_table, index=False)
    _truncated_png(image_table.parent / "img" / "3.png")
    with pytest.raises(TailorError, match=r"labels\.csv: row 2: .*absent\.png: file not found"):
        load_image_table(image_table, image_column="file", label_column="kind")
    data = load_image_table(image_table, image_column="file", label_column="kind", skip_bad=True)
    assert len(data) == 2 and data.num_skipped == 2
    assert "row 4" in data.skipped[1] and "corrupt or truncated" in data.skipped[1]


# -- arrays ---------------------------------------------------------------------------------------


def test_npz_with_integer_labels_and_names(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 5, 4), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", images=images, labels=np.array([0, 2, 1, 2, 0, 1]),
             classes=np.array(["ant", "bee", "cat"]))
    data = load_image_file(tmp_path / "a.npz")
    assert data.images.shape == (6, 5, 4, 1) and np.array_equal(data.images[..., 0], images)
    assert data.classes == ["ant", "bee", "cat"] and data.labels.tolist() == [0, 2, 1, 2, 0, 1]
    assert data.name_of(3) == f"{tmp_path / 'a.npz'}[3]"


def test_npz_string_labels_and_float_pixels(tmp_path):
    images = np.linspace(0, 1, 3 * 2 * 2 * 3).reshape(3, 2, 2, 3)
    np.savez(tmp_path / "b.npz", images=images, labels=np.array(["x", "y", "x"]))
    data = load_image_arrays(tmp_path / "b.npz")
    assert data.images.dtype == np.uint8 and data.images.max() == 255
    assert data.classes == ["x", "y"] and data.labels.tolist() == [0, 1, 0]
    with pytest.raises(TailorError, match=r"labels\[1\]: label 'y' is not one of the training classes"):
        load_image_arrays(tmp_path / "b.npz", classes=["x"])


@pytest.mark.parametrize("arrays, message", [
    ({"pixels": np.zeros((2, 3, 3), np.uint8), "labels": np.zeros(2, int)}, r"no array 'images'"),
    ({"images": np.zeros((2, 3, 3), np.uint8), "labels": np.zeros(3, int)}, r"2 images but 3 labels"),
    ({"images": np.zeros((2, 3, 3, 2), np.uint8), "labels": np.zeros(2, int)}, r"images must have shape"),
    ({"images": np.zeros((2, 0, 3), np.uint8), "labels": np.zeros(2, int)}, r"zero-size image array"),
    ({"images": np.full((2, 3, 3), 2.0), "labels": np.zeros(2, int)}, r"float images must lie in 0-1"),
    ({"images": np.full((2, 3, 3), 300), "labels": np.zeros(2, int)}, r"must lie in 0-255"),
    ({"images": np.zeros((2, 3, 3), np.uint8), "labels": np.array([0, -1])}, r"label -1 is negative"),
    ({"images": np.zeros((2, 3, 3), np.uint8), "labels": np.array([0.5, 1.0])}, r"labels must be integers"),
])
def test_npz_problems(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(TailorError, match=message):
        load_image_arrays(tmp_path / "bad.npz")


def test_npz_with_pickled_objects_is_refused(tmp_path):
    np.savez(tmp_path / "obj.npz", images=np.array([{"a": 1}], dtype=object), labels=np.zeros(1, int))
    with pytest.raises(TailorError, match=r"obj\.npz: cannot read as \.npz"):
        load_image_arrays(tmp_path / "obj.npz")


# -- IDX ------------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    """IDX bytes for a uint8 array: 2 zero bytes, type 0x08, rank, big-endian dims, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def test_idx_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / "i.idx", images)), images)
    assert np.array_equal(read_idx(write_idx(tmp_path / "i.gz", images, compress=True)), images)
    header = bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big")
    (tmp_path / "ints.idx").write_bytes(header + np.array([1, -2, 70000], ">i4").tobytes())
    assert read_idx(tmp_path / "ints.idx").tolist() == [1, -2, 70000]


def test_idx_pair(tmp_path):
    images = write_idx(tmp_path / "img.gz", np.zeros((3, 4, 4)), compress=True)
    labels = write_idx(tmp_path / "lab.gz", np.array([2, 0, 1]), compress=True)
    data = load_idx(images, labels, classes=["a", "b", "c"])
    assert data.images.shape == (3, 4, 4, 1) and data.labels.tolist() == [2, 0, 1]
    short = write_idx(tmp_path / "short", np.array([2, 0]))
    with pytest.raises(TailorError, match=r"3 images but .*short has 2 labels"):
        load_idx(images, short)


def test_idx_problems(tmp_path):
    good = write_idx(tmp_path / "good", np.zeros((4, 3, 3))).read_bytes()
    (tmp_path / "cut").write_bytes(good[:-5])
    with pytest.raises(TailorError, match=r"cut: IDX header says \(4, 3, 3\) .*truncated or corrupt"):
        read_idx(tmp_path / "cut")
    (tmp_path / "magic").write_bytes(b"\x89PNG" + good[4:])
    with pytest.raises(TailorError, match=r"magic: not an IDX file"):
        read_idx(tmp_path / "magic")
    (tmp_path / "gz").write_bytes(gzip.compress(good)[:-8])
    with pytest.raises(TailorError, match=r"gz: corrupt gzip data"):
        read_idx(tmp_path / "gz")


# -- the catalogue --------------------------------------------------------------------------------


def test_digits_from_scikit_learn():
    data = catalogue.load_catalogue_images("digits")["train"]
    assert len(data) == 1797
    assert data.images.shape == (1797, 8, 8, 1) and data.images.dtype == np.uint8
    assert data.images.max() == 255 and data.classes == [str(d) for d in range(10)]
    assert np.bincount(data.labels).min() >= 170
    assert data.name_of(5) == "digits[5]"


def test_fashion_mnist_reader_on_small_idx_files(tmp_path, monkeypatch):
    """The catalogue reader on tiny files laid out as the Debian package lays them out."""
    for prefix, n in (("train", 6), ("t10k", 2)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", np.full((n, 28, 28), 7), compress=True)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10, compress=True)
    entry = catalogue.IMAGE_DATASETS["fashion-mnist"]
    debian = catalogue.DebianData(entry.name, entry.debian.package, tmp_path, entry.debian.description)
    monkeypatch.setitem(catalogue.IMAGE_DATASETS, "fashion-mnist",
                        catalogue.ImageCatalogueDataset(entry.name, entry.description, entry.reader, debian))
    splits = catalogue.load_catalogue_images("fashion-mnist")
    assert {k: len(v) for k, v in splits.items()} == {"train": 6, "test": 2}
    assert splits["train"].classes[9] == "Ankle boot" and splits["test"].name_of(1) == "fashion-mnist:test[1]"


def test_missing_debian_dataset_says_how_to_install(monkeypatch, tmp_path):
    entry = catalogue.IMAGE_DATASETS["fashion-mnist"]
    debian = catalogue.DebianData(entry.name, entry.debian.package, tmp_path / "absent", "")
    monkeypatch.setitem(catalogue.IMAGE_DATASETS, "fashion-mnist",
                        catalogue.ImageCatalogueDataset(entry.name, entry.description, entry.reader, debian))
    with pytest.raises(TailorError, match=r"'fashion-mnist' needs the Debian package dataset-fashion-mnist .*"
                                          r"install it with: apt-get install -y dataset-fashion-mnist"):
        catalogue.load_catalogue_images("fashion-mnist")


def test_unknown_image_dataset_lists_the_catalogue():
    with pytest.raises(TailorError, match=r"unknown catalogue image dataset 'cifar' \(catalogue: digits, "
                                          r"fashion-mnist\)"):
        catalogue.load_catalogue_images("cifar")


@pytest.mark.skipif(not catalogue.IMAGE_DATASETS["fashion-mnist"].debian.folder.is_dir(),
                    reason="needs: apt-get install -y dataset-fashion-mnist")
def test_real_fashion_mnist():
    splits = catalogue.load_catalogue_images("fashion-mnist")
    train, test = splits["train"], splits["test"]
    assert train.images.shape == (60000, 28, 28, 1) and test.images.shape == (10000, 28, 28, 1)
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert train.labels[:4].tolist() == [9, 0, 0, 3]  # ankle boot, T-shirt, T-shirt, dress


def test_take_keeps_classes_and_names(class_folder):
    data = load_image_folder(class_folder).take([4, 0])
    assert data.labels.tolist() == [1, 0] and data.classes == ["cat", "dog"]
    assert data.name_of(0).endswith("d1.png")
    digits = catalogue.load_catalogue_images("digits")["train"].take(np.array([7, 3]))
    assert digits.images.shape == (2, 8, 8, 1) and digits.name_of(1) == "digits[3]"
