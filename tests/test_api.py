"""The Python API end to end on the tiny model: the run directory and what it promises."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from tailorkit import api
from tailorkit.errors import TailorError
from tailorkit.recipe import load_recipe, recipe_from_dict

CLASS_KEYS = {"loss", "accuracy", "per_class", "confusion_matrix"} | {
    f"{m}_{a}" for m in ("precision", "recall", "f1") for a in ("macro", "micro", "weighted")}


@pytest.fixture(scope="module")
def summary(finished_run) -> dict:
    return json.loads((finished_run / "summary.json").read_text())


def test_run_directory_layout(finished_run):
    names = {p.name for p in finished_run.iterdir()}
    assert {"recipe.yaml", "metrics.jsonl", "summary.json", "model", "predictions_test.csv"} <= names
    assert "checkpoint" not in names and not any(n.endswith(".tmp") for n in names)


def test_resolved_recipe_is_saved(finished_run):
    recipe = load_recipe(finished_run / "recipe.yaml")
    assert recipe.output_dir == str(finished_run)
    assert recipe.train.epochs == 15 and recipe.train.optimizer == "adamw"  # defaults written out
    text = (finished_run / "recipe.yaml").read_text()
    assert "weight_decay:" in text and "early_stopping:" in text


def test_summary_metrics(summary):
    test = summary["test"]
    assert set(test) >= CLASS_KEYS
    cm = test["confusion_matrix"]
    assert cm["labels"] == summary["labels"] == ["neg", "pos"]
    matrix = np.array(cm["matrix"])
    assert matrix.sum() == summary["data"]["test"] == 24  # 20% of 120 rows
    assert test["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert test["accuracy"] > 0.7  # the tiny model does learn the cue words
    assert sum(summary["data"].values()) == 120 and summary["data"]["validation"] > 0
    assert "accuracy" in summary["validation"]


def test_summary_costs(summary):
    params = summary["parameters"]
    assert params["trainable"] == params["total"] > 0  # full fine-tuning
    assert params["trainable_pct"] == 100.0
    assert summary["wall_seconds"] >= summary["train_seconds"] > 0
    assert summary["samples_per_second"] > 0 and summary["peak_rss_mb"] > 50
    assert summary["steps"] == 15 * math.ceil(summary["data"]["train"] / 8) and summary["epochs"] == 15
    assert summary["versions"]["torch"] == torch.__version__


def test_predictions_csv_agrees_with_the_summary(finished_run, summary):
    frame = pd.read_csv(finished_run / "predictions_test.csv")
    assert list(frame.columns) == ["text", "label", "prediction", "confidence", "p_neg", "p_pos"]
    assert len(frame) == 24
    assert (frame.label == frame.prediction).mean() == pytest.approx(summary["test"]["accuracy"])


def test_model_folder_loads_in_plain_transformers_with_the_same_outputs(finished_run, summary):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = finished_run / "model"
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    frame = pd.read_csv(finished_run / "predictions_test.csv")
    batch = tokenizer(list(frame.text), padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(model(**batch).logits, -1).numpy()
    np.testing.assert_allclose(probs, frame[["p_neg", "p_pos"]].to_numpy(), atol=1e-5)


def test_evaluate_on_a_file_reproduces_the_test_metrics(finished_run, summary, tmp_path):
    frame = pd.read_csv(finished_run / "predictions_test.csv")[["text", "label"]]
    frame.to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "scored.csv"
    metrics = api.evaluate(finished_run, str(tmp_path / "test.csv"), str(out))
    for key in ("accuracy", "f1_macro", "precision_weighted"):
        assert metrics[key] == pytest.approx(summary["test"][key])
    assert metrics["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-5)
    assert metrics["confusion_matrix"] == summary["test"]["confusion_matrix"]
    assert len(pd.read_csv(out)) == 24


def test_evaluate_rejects_labels_the_run_never_saw(finished_run, write_table, sentences):
    frame = sentences(5)
    frame.loc[2, "label"] = "meh"
    path = write_table(frame, "new.csv")
    with pytest.raises(TailorError, match=r"row 3: label 'meh' was not seen in training"):
        api.evaluate(finished_run, str(path))


def test_predict(finished_run):
    frame = api.predict(finished_run, ["a lovely and superb film", "an awful nasty plot"])
    assert frame.prediction.tolist() == ["pos", "neg"]
    assert ((frame.confidence > 0.5) & (frame.confidence <= 1)).all()
    for texts in (["fine", "  "], ["fine", None]):
        with pytest.raises(TailorError, match="non-empty"):
            api.predict(finished_run, texts)
    with pytest.raises(TailorError, match="no texts"):
        api.predict(finished_run, [])


def test_load_run_refuses_what_is_not_a_finished_run(tmp_path, finished_run):
    with pytest.raises(TailorError, match="not a tailorkit run directory"):
        api.load_run(tmp_path)
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "recipe.yaml").write_text((finished_run / "recipe.yaml").read_text())
    with pytest.raises(TailorError, match="no final model yet"):
        api.load_run(tmp_path / "half")


def test_partial_run_counts_trainable_parameters(tiny_recipe):
    run = api.train(recipe_from_dict({**tiny_recipe, "methods": [{"freeze": {"top": 0}}],
                                      "train": {**tiny_recipe["train"], "epochs": 1}}))
    params = json.loads((run / "summary.json").read_text())["parameters"]
    hidden = 32
    head = (hidden * hidden + hidden) + (hidden * 2 + 2)  # pooler + classifier
    assert params["trainable"] == head < params["total"]
    assert params["trainable_pct"] == pytest.approx(100 * head / params["total"], abs=1e-3)


# -- the run directory is never mixed, never deleted -------------------------------------------------

def _quick(tiny_recipe) -> dict:
    return {**tiny_recipe, "train": {**tiny_recipe["train"], "max_steps": 2}}


def test_refuses_to_reuse_a_finished_run_and_leaves_it_intact(tiny_recipe):
    run = api.train(recipe_from_dict(_quick(tiny_recipe)))
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(TailorError, match=r"already holds a finished run.*--overwrite"):
        api.train(recipe_from_dict(_quick(tiny_recipe)))
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_overwrite_moves_the_old_run_aside(tiny_recipe, tmp_path, capsys):
    recipe = recipe_from_dict(_quick(tiny_recipe))
    run = api.train(recipe)
    old_summary = (run / "summary.json").read_text()
    api.train(recipe, overwrite=True)
    api.train(recipe, overwrite=True)  # twice within a second must not collide
    backups = sorted(tmp_path.glob("run.bak-*"))
    assert len(backups) == 2
    assert (backups[0] / "summary.json").read_text() == old_summary
    assert all((b / "model").is_dir() for b in backups)
    assert (run / "summary.json").is_file()
    assert "moved the previous run to" in capsys.readouterr().out


def test_refuses_a_folder_with_other_files(tiny_recipe, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(TailorError, match="already holds files"):
        api.train(recipe_from_dict(tiny_recipe))
    # --overwrite moves earlier runs aside, never the user's own folders
    with pytest.raises(TailorError, match="holds files that are not a tailorkit run"):
        api.train(recipe_from_dict(tiny_recipe), overwrite=True)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob("run.bak-*"))


def test_refuses_an_output_dir_that_is_a_file_or_holds_the_current_folder(tiny_recipe, tmp_path,
                                                                          monkeypatch):
    (tmp_path / "run").write_text("my data")
    with pytest.raises(TailorError, match="output_dir .* is a file"):
        api.train(recipe_from_dict(tiny_recipe))
    assert (tmp_path / "run").read_text() == "my data"
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "recipe.yaml").write_text("task: classification")
    monkeypatch.chdir(tmp_path / "here")
    with pytest.raises(TailorError, match="holds the current folder"):
        api.train(recipe_from_dict({**tiny_recipe, "output_dir": "."}), overwrite=True)
    assert (tmp_path / "here" / "recipe.yaml").is_file()


def test_bad_data_leaves_no_half_run_behind(tiny_recipe, tmp_path):
    bad = {**tiny_recipe, "data": {**tiny_recipe["data"], "text_column": "review"}}
    with pytest.raises(TailorError, match="no column 'review'"):
        api.train(recipe_from_dict(bad))
    assert not (tmp_path / "run").exists()
    assert api.train(recipe_from_dict(_quick(tiny_recipe))).is_dir()  # the fixed recipe just runs


@pytest.mark.slow
def test_real_catalogue_end_to_end(tmp_path):
    """minilm-l6 on bbc-news through the API: a few head-only steps on a small seeded subset."""
    recipe = recipe_from_dict({
        "model": {"name": "minilm-l6", "max_length": 64},
        "data": {"name": "bbc-news", "max_train_samples": 64, "max_eval_samples": 32},
        "methods": [{"freeze": {"top": 1}}],
        "train": {"max_steps": 4, "batch_size": 16, "lr": 1e-3, "progress": False},
        "output_dir": str(tmp_path / "bbc"),
    })
    run = api.train(recipe)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["labels"] == ["business", "entertainment", "politics", "sports", "tech"]
    assert summary["data"] == {"train": 64, "validation": 32, "test": 32}
    assert summary["steps"] == 4
    assert 0 < summary["parameters"]["trainable"] < summary["parameters"]["total"] / 3
    frame = api.predict(run, ["The central bank raised interest rates again."])
    assert frame.prediction[0] in summary["labels"]
