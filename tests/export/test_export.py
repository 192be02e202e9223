"""`tailor export`: ONNX and merged-HF artefacts match their run on the test split (checked in
the artefact's own runtime), refusals come before anything is written, parity failures are loud."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_sentences, recipe_dict
from tailorkit import api
from tailorkit.cli import main
from tailorkit.errors import TailorError
from tailorkit.export.run import export_run
from tailorkit.recipe import recipe_from_dict

pytest.importorskip("onnxruntime")


def test_onnx_export_matches_the_run_in_onnxruntime(finished_run, tmp_path, capsys):
    out = tmp_path / "onnx"
    assert main(["export", str(finished_run), "--format", "onnx", "--out", str(out), "--samples", "0"]) == 0
    record = json.loads((out / "export.json").read_text())
    p = record["parity"]
    assert p["examples"] == p["test_rows"] == 24 and p["passed"]
    assert p["max_abs_logit_diff"] < 1e-4 and p["run"] == p["export"] and p["same_prediction"] == 1.0
    assert "parity on 24 test examples" in capsys.readouterr().out

    # dynamic axes: a batch and a length the trace never saw, straight through onnxruntime
    import onnxruntime as ort

    _, handle, _, _ = api.load_run(finished_run)
    enc = handle.tokenizer(["good movie", "the plot was very bad and the acting was really awful too"],
                           padding=True, return_tensors="pt")
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {i.name: enc[i.name].numpy() for i in session.get_inputs()})[0]
    with torch.no_grad():
        want = handle.model(**enc).logits.numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert (out / "labels.json").is_file() and (out / "tokenizer.json").is_file()


def test_hf_export_of_a_lora_run_is_a_plain_merged_model(tiny_model_dir, sentiment_csv, tmp_path):
    recipe = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "lora", epochs=2)
    recipe["methods"] = [{"lora": {"r": 4}}]
    run = api.train(recipe_from_dict(recipe))
    record = export_run(run, "hf", tmp_path / "merged", samples=None)
    assert record["parity"]["passed"] and record["parity"]["max_abs_logit_diff"] < 1e-4
    assert not (tmp_path / "merged" / "adapter_config.json").exists()
    from transformers import AutoModelForSequenceClassification

    AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")  # plain transformers
    onnx = export_run(run, "onnx", tmp_path / "onnx", samples=None)  # the PEFT model traced as it runs
    assert onnx["parity"]["passed"] and onnx["parity"]["max_abs_logit_diff"] < 1e-4


def test_a_regression_run_exports_to_onnx(tiny_model_dir, tmp_path):
    csv = tmp_path / "scores.csv"
    make_sentences(80).to_csv(csv, index=False)
    recipe = recipe_dict(tiny_model_dir, csv, tmp_path / "reg", epochs=1)
    recipe["task"], recipe["data"]["label_column"] = "regression", "score"
    record = export_run(api.train(recipe_from_dict(recipe)), "onnx", tmp_path / "onnx")
    assert record["parity"]["metric"] == "mse" and record["parity"]["passed"]


def test_parity_failure_is_loud_and_keeps_the_record(finished_run, tmp_path, monkeypatch):
    """An artefact whose logits are off by 0.01 (a broken export) fails past --tolerance."""
    import tailorkit.export.run as export_module

    real = export_module.onnx_runner
    monkeypatch.setattr(export_module, "onnx_runner", lambda path: lambda batch: real(path)(batch) + 0.01)
    with pytest.raises(TailorError, match="export parity failed.*0.01 > --tolerance 0.001"):
        export_run(finished_run, "onnx", tmp_path / "o", samples=8)
    parity = json.loads((tmp_path / "o" / "export.json").read_text())["parity"]
    assert parity["passed"] is False and parity["max_abs_logit_diff"] == pytest.approx(0.01, abs=1e-5)
    assert (tmp_path / "o" / "model.onnx").is_file()  # kept for inspection
    looser = ["--out", str(tmp_path / "p"), "--tolerance", "0.1"]
    assert main(["export", str(finished_run), "--format", "onnx", *looser]) == 0


def test_refusals_name_the_reason_and_write_nothing(tiny_model_dir, sentiment_csv, finished_run, tmp_path):
    recipe = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "prompt", epochs=1)
    recipe["methods"] = [{"prompt": {"virtual_tokens": 4}}]
    run = api.train(recipe_from_dict(recipe))
    with pytest.raises(TailorError, match="virtual tokens.*no merged model"):
        export_run(run, "hf", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(TailorError, match="not an empty folder"):
        export_run(finished_run, "onnx", tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    with pytest.raises(TailorError, match="--format tflite: not a format"):
        export_run(finished_run, "tflite", tmp_path / "y")


@pytest.mark.parametrize(("head", "fmt", "why"), [
    ("linear", "hf", "not one transformers model; export --format onnx"),
    ("logistic_regression", "onnx", r"scikit-learn head \(logistic_regression\) has no ONNX graph")])
def test_features_runs_export_to_onnx_with_a_torch_head_only(tiny_model_dir, sentiment_csv, tmp_path,
                                                             head, fmt, why):
    recipe = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "features")
    recipe["methods"] = [{"features": {"head": head, "head_epochs": 2}}]
    run = api.train(recipe_from_dict(recipe))
    with pytest.raises(TailorError, match=why):
        export_run(run, fmt, tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("existing", [False, True])
def test_an_export_that_fails_before_parity_leaves_nothing(finished_run, tmp_path, monkeypatch, existing):
    import tailorkit.export.run as export_module

    def broken(model, example, out):
        (out / "model.onnx").write_bytes(b"half a file")
        raise RuntimeError("the tracer fell over")

    monkeypatch.setattr(export_module, "export_onnx", broken)
    out = tmp_path / "o"
    if existing:
        out.mkdir()
    with pytest.raises(RuntimeError, match="fell over"):
        export_run(finished_run, "onnx", out, samples=4)
    assert (out.is_dir() and not any(out.iterdir())) if existing else not out.exists()


def test_a_mobilenet_v2_run_exports_to_onnx(tmp_path):
    recipe = {"task": "image_classification", "model": {"name": "mobilenet-v2", "pretrained": False},
              "data": {"name": "digits", "max_train_samples": 32, "max_eval_samples": 16,
                       "image": {"size": 32, "augment": "none", "hflip": False}},
              "methods": ["full"], "train": {"epochs": 1, "batch_size": 16, "progress": False, "threads": 1},
              "output_dir": str(tmp_path / "run")}
    record = export_run(api.train(recipe_from_dict(recipe)), "onnx", tmp_path / "onnx", samples=32)
    p = record["parity"]
    assert p["passed"] and p["examples"] == 16 and p["max_abs_logit_diff"] < 1e-3


def test_a_4bit_base_merges_only_with_dequantize(finished_run, tmp_path):
    import shutil

    import yaml

    run = Path(shutil.copytree(finished_run, tmp_path / "qlora-like"))
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["model"]["quantize_base"], recipe["methods"] = "nf4", ["lora"]  # what a QLoRA run records
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    with pytest.raises(TailorError, match="4-bit.*--dequantize"):
        export_run(run, "hf", tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_a_bottleneck_adapter_run_exports_to_onnx_as_it_runs(tiny_model_dir, sentiment_csv, tmp_path):
    recipe = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "bn", epochs=1)
    recipe["methods"] = ["bottleneck"]
    record = export_run(api.train(recipe_from_dict(recipe)), "onnx", tmp_path / "onnx", samples=None)
    assert record["parity"]["passed"] and record["parity"]["max_abs_logit_diff"] < 1e-4
