"""/v1/predict beyond single texts: an image run (base64 image files) and a run trained on text
pairs, served together with httpx as the client; answers compared with `tailor predict`'s
(api.predict_images and api.predict, which the CLI calls)."""

from __future__ import annotations

import base64
import concurrent.futures
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_sentences, recipe_dict
from tailorkit import api
from tailorkit.recipe import recipe_from_dict
from tailorkit.serve.app import create_app
from tailorkit.serve.models import load_served
from tailorkit.serve.server import BackgroundServer
from tailorkit.serve.settings import ServeSettings

TOLERANCE = 1e-5  # probabilities: batched with other requests' inputs against predicted alone


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> Path:
    """A 2-layer ViT (hidden 32) trained one epoch on scikit-learn's digits at 32x32."""
    from transformers import ViTConfig, ViTForImageClassification

    root = tmp_path_factory.mktemp("serve-images")
    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64)
    ViTForImageClassification(config).save_pretrained(root / "vit")
    recipe = {"task": "image_classification", "model": {"name": str(root / "vit")},
              "data": {"name": "digits", "max_train_samples": 160, "max_eval_samples": 40,
                       "image": {"size": 32, "augment": "none", "hflip": False}},
              "methods": ["full"],
              "train": {"epochs": 1, "batch_size": 16, "lr": 1e-3, "progress": False, "threads": 1},
              "output_dir": str(root / "digits")}
    return api.train(recipe_from_dict(recipe))


@pytest.fixture(scope="module")
def pair_run(tiny_model_dir, tmp_path_factory) -> Path:
    """Text pairs whose label is the second text's sentiment (data.text_pair_column: second)."""
    root = tmp_path_factory.mktemp("serve-pairs")
    first, second = make_sentences(80, seed=1), make_sentences(80, seed=2)
    first.assign(second=second["text"], label=second["label"]).to_csv(root / "pairs.csv", index=False)
    recipe = recipe_dict(tiny_model_dir, root / "pairs.csv", root / "pairs", epochs=2, lr=1e-2)
    recipe["data"]["text_pair_column"] = "second"
    return api.train(recipe_from_dict(recipe))


@pytest.fixture(scope="module")
def server(image_run, pair_run, finished_run):
    settings = ServeSettings(max_batch_size=16, max_wait_ms=30, max_images=4, max_image_bytes=20_000,
                             max_image_pixels=5_000, max_chars=200)
    with BackgroundServer(create_app(load_served([image_run, pair_run, finished_run]), settings)) as url:
        yield url


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory) -> list[Path]:
    """Eight digits as PNG files, and one as JPEG: what a client would send."""
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("digit-files")
    digits = load_digits()
    files = []
    for i in range(9):
        path = root / (f"d{i}.jpg" if i == 8 else f"d{i}.png")
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(path)
        files.append(path)
    return files


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_images_answer_as_tailor_predict_does_also_when_batched(server, image_run, digit_files):
    expected = api.predict_images(image_run, [str(f) for f in digit_files])
    labels = [c[2:] for c in expected.columns if c.startswith("p_")]

    def ask(files: list[Path]) -> list[dict]:
        r = httpx.post(f"{server}/v1/predict", timeout=60,
                       json={"model": "digits", "images": [_b64(f.read_bytes()) for f in files]})
        assert r.status_code == 200, r.text
        return r.json()["predictions"]

    answers = ask(digit_files[:2])  # several images in one request
    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # one per request, batched by the server
        answers += [rows[0] for rows in pool.map(ask, [[f] for f in digit_files[2:]] * 2)][:7]
    assert len(answers) == len(digit_files)
    for got, (_, row) in zip(answers, expected.iterrows(), strict=True):
        assert got["label"] == str(row["prediction"])
        assert list(got["probabilities"]) == labels
        for label, p in got["probabilities"].items():
            assert p == pytest.approx(row[f"p_{label}"], abs=TOLERANCE)
    sizes = httpx.get(f"{server}/metrics.json").json()["batches"]["sizes"]
    assert max(int(k) for k in sizes) > 2  # concurrent image requests shared model calls
    data_url = "data:image/png;base64," + _b64(digit_files[0].read_bytes())
    wrapped = base64.encodebytes(digit_files[0].read_bytes()).decode()  # line breaks every 76 characters
    r = httpx.post(f"{server}/v1/predict", json={"model": "digits", "images": [data_url, wrapped]})
    assert r.status_code == 200
    assert [p["label"] for p in r.json()["predictions"]] == [str(expected["prediction"][0])] * 2


def _png(size: tuple[int, int], noise: bool) -> bytes:
    pixels = (np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8) if noise
              else np.full((size[1], size[0], 3), 90, dtype=np.uint8))
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_bad_images_get_a_4xx_naming_the_image(server, digit_files):
    good = _b64(digit_files[0].read_bytes())

    def post(body: dict) -> tuple[int, str]:
        r = httpx.post(f"{server}/v1/predict", json={"model": "digits"} | body, timeout=60)
        return r.status_code, r.json()["error"]["message"] if r.status_code != 200 else ""

    code, message = post({"images": [good, "not base64!"]})
    assert code == 400 and message.startswith("images.1: not valid base64")
    code, message = post({"images": [_b64(b"GIF89a but not really an image")]})
    assert code == 400 and message == "images.0: not an image file Pillow can read"
    code, message = post({"images": [_b64(_png((100, 100), noise=True))]})  # about 30 kB of noise
    assert code == 413 and message.startswith("images.0:") and "limit is 20000 bytes" in message
    code, message = post({"images": [_b64(_png((80, 80), noise=False))]})  # small file, 6400 pixels
    assert code == 413 and message == "images.0: 80x80 pixels; the limit is 5000"
    code, message = post({"images": [good] * 5})
    assert code == 413 and message == "images: 5 images; the limit is 4 per request"
    code, message = post({"texts": ["a digit"]})
    assert code == 400 and message.startswith("texts: model 'digits' is an image run; send images")
    code, message = post({"images": []})
    assert code == 400 and message.startswith("images:")
    r = httpx.post(f"{server}/v1/predict", json={"model": "run", "images": [good]})
    message = r.json()["error"]["message"]
    assert r.status_code == 400 and message.startswith("images: model 'run' is a text run")
    assert httpx.get(f"{server}/health").json()["status"] == "ok"  # none of it hurt the server


def test_text_pairs_answer_as_tailor_predict_does(server, pair_run):
    texts = ["good movie", "the plot was awful", "a fine day", "sad story"]
    pairs = ["superb film", "superb film", "ugly and sad", "really lovely"]
    expected = api.predict(pair_run, texts, pairs)

    def ask(i: int) -> dict:
        r = httpx.post(f"{server}/v1/predict", json={"model": "pairs", "texts": [texts[i]],
                                                     "text_pairs": [pairs[i]]}, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()["predictions"][0]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(ask, range(len(texts))))
    for got, (_, row) in zip(answers, expected.iterrows(), strict=True):
        assert got["label"] == row["prediction"]
        for label, p in got["probabilities"].items():
            assert p == pytest.approx(row[f"p_{label}"], abs=TOLERANCE)
    assert answers[0]["probabilities"] != answers[1]["probabilities"]  # the second text counts
    r = httpx.post(f"{server}/v1/predict", json={"model": "pairs", "texts": texts, "text_pairs": pairs})
    assert [p["label"] for p in r.json()["predictions"]] == expected["prediction"].tolist()


def test_pairs_refused_where_they_do_not_fit(server):
    def post(body: dict) -> tuple[int, str]:
        r = httpx.post(f"{server}/v1/predict", json=body, timeout=60)
        return r.status_code, r.json()["error"]["message"]

    code, message = post({"model": "pairs", "texts": ["good movie"]})
    assert code == 400 and message.startswith("text_pairs: model 'pairs' was trained on text pairs "
                                              "(data.text_pair_column: second)")
    code, message = post({"model": "run", "texts": ["good movie"], "text_pairs": ["fine"]})
    assert code == 400 and message == "text_pairs: model 'run' was not trained on text pairs; send texts only"
    code, message = post({"model": "pairs", "texts": ["good movie", "bad"], "text_pairs": ["fine"]})
    assert code == 400 and message == "text_pairs: 1 second texts for 2 texts; send one per text"
    code, message = post({"model": "pairs", "texts": ["good movie"], "text_pairs": [" "]})
    assert code == 400 and message == "text_pairs.0: empty text"
    code, message = post({"model": "pairs", "texts": ["good movie"], "text_pairs": ["x" * 201]})
    assert code == 413 and message.startswith("text_pairs.0: 201 characters")
    code, message = post({"model": "pairs", "images": [_b64(b"x")]})
    assert code == 400 and message.startswith("images: model 'pairs' is a text run")
