"""`tailor` end to end on the tiny model; bad input gives one line and exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from tailorkit import cli
from tailorkit.methods import METHODS


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2
    assert err.startswith("error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, (word, err)


def _quick(recipe: dict, **train) -> dict:
    return {**recipe, "train": {**recipe["train"], "max_steps": 3, **train}}


def test_train_writes_a_run_and_prints_a_summary(tiny_recipe, write_recipe, capsys, tmp_path):
    code, out, _ = _run(capsys, "train", write_recipe(_quick(tiny_recipe)), "--set", "train.lr=1e-3")
    assert code == 0
    run = tmp_path / "run"
    assert f"run: {run}" in out and "test: accuracy=" in out and "trainable " in out
    assert json.loads((run / "summary.json").read_text())["steps"] == 3
    assert "lr: 0.001" in (run / "recipe.yaml").read_text()  # the override is what ran


def test_eval_prints_metrics_and_writes_predictions(finished_run, capsys, write_table, sentences, tmp_path):
    data = write_table(sentences(30, seed=5), "holdout.jsonl")
    code, out, _ = _run(capsys, "eval", finished_run, "--data", data, "--output", tmp_path / "scored.csv")
    assert code == 0
    metrics = json.loads(out)
    assert metrics["accuracy"] > 0.7 and sum(map(sum, metrics["confusion_matrix"]["matrix"])) == 30
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert len(scored) == 30 and (scored.label == scored.prediction).mean() == pytest.approx(
        metrics["accuracy"])


def test_predict_text(finished_run, capsys):
    code, out, _ = _run(capsys, "predict", finished_run, "--text", "a superb lovely film",
                        "--text", "terrible and awful")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["text", "prediction", "confidence"]
    assert lines[1].split()[-2] == "pos" and lines[2].split()[-2] == "neg"


def test_predict_file_to_file(finished_run, capsys, write_table, sentences, tmp_path):
    frame = sentences(12, seed=9).rename(columns={"text": "review"})[["review"]]
    source = write_table(frame, "in.csv")
    original = source.read_bytes()
    code, out, _ = _run(capsys, "predict", finished_run, "--input", source, "--text-column", "review",
                        "--output", tmp_path / "out.csv")
    assert code == 0 and "wrote 12 predictions" in out
    result = pd.read_csv(tmp_path / "out.csv")
    assert result.text.tolist() == frame.review.tolist()
    assert set(result.prediction) <= {"neg", "pos"}
    assert source.read_bytes() == original


def test_predict_refuses_to_overwrite_its_input(finished_run, capsys, write_table, sentences):
    source = write_table(sentences(4), "in.csv")
    original = source.read_bytes()
    code, _, err = _run(capsys, "predict", finished_run, "--input", source, "--output", source)
    _assert_one_line_error(code, err, "--output must differ from --input")
    assert source.read_bytes() == original


def test_methods_lists_every_method_and_its_fields(capsys):
    code, out, _ = _run(capsys, "methods")
    assert code == 0
    for name, cls in METHODS.items():
        assert f"{name}: {cls.summary}" in out
        for field in cls.Config.model_fields:
            assert f"    {field} = " in out, (name, field)


def test_refuses_an_existing_run_without_overwrite(tiny_recipe, write_recipe, capsys, tmp_path):
    path = write_recipe(_quick(tiny_recipe))
    assert _run(capsys, "train", path)[0] == 0
    summary = (tmp_path / "run" / "summary.json").read_bytes()
    code, _, err = _run(capsys, "train", path)
    _assert_one_line_error(code, err, "already holds a finished run", "--overwrite")
    assert (tmp_path / "run" / "summary.json").read_bytes() == summary

    code, out, _ = _run(capsys, "train", path, "--overwrite")
    assert code == 0 and "moved the previous run to" in out
    (backup,) = tmp_path.glob("run.bak-*")
    assert (backup / "summary.json").read_bytes() == summary


# -- bad input: one line, exit 2, no traceback ---------------------------------------------------

def _recipe_variant(tiny_recipe, tmp_path, kind):
    r = _quick(tiny_recipe)
    if kind == "missing column":
        return {**r, "data": {**r["data"], "text_column": "review"}}, ["no column 'review'", "text, label"]
    if kind == "unknown field":
        return {**r, "train": {**r["train"], "lrr": 1}}, ["train.lrr", "did you mean 'lr'"]
    if kind == "missing train file":
        return ({**r, "data": {**r["data"], "train": str(tmp_path / "gone.csv")}},
                ["data.train: file not found"])
    if kind == "class weights length":
        return {**r, "train": {**r["train"], "class_weights": [1, 2, 3]}}, ["3 values for 2 classes"]
    if kind == "freeze too deep":
        return {**r, "methods": [{"freeze": {"top": 9}}]}, ["freeze.top=9", "2 blocks"]
    if kind == "unknown method":
        return {**r, "methods": ["magic"]}, ["unknown method 'magic'"]
    if kind == "model folder missing":
        return {**r, "model": {"name": str(tmp_path / "no-model")}}, ["model.name", "no-model"]
    if kind == "bad enum":
        return {**r, "train": {**r["train"], "schedule": "cyclic"}}, ["train.schedule: must be one of"]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing column", "unknown field", "missing train file",
                                  "class weights length", "freeze too deep", "unknown method",
                                  "model folder missing", "bad enum"])
def test_bad_recipe_through_train(kind, tiny_recipe, write_recipe, capsys, tmp_path):
    recipe, words = _recipe_variant(tiny_recipe, tmp_path, kind)
    code, _, err = _run(capsys, "train", write_recipe(recipe))
    _assert_one_line_error(code, err, *words)
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize(("argv", "words"), [
    (["train", "{tmp}/nope.yaml"], ["recipe file not found"]),
    (["train", "{recipe}", "--set", "train.batch_size=many"], ["train.batch_size"]),
    (["train", "{recipe}", "--set", "train.lr"], ["expected dotted.path=value"]),
    (["train"], ["give a recipe file or --resume"]),
    (["train", "{recipe}", "--resume", "{tmp}"], ["give a recipe file or --resume"]),
    (["train", "--resume", "{tmp}"], ["no checkpoint found"]),
    (["eval", "{tmp}/empty", "--data", "x.csv"], ["not a tailorkit run directory"]),
    (["predict", "{tmp}/empty", "--text", "hello"], ["not a tailorkit run directory"]),
    (["eval", "{tmp}", "--data", "x.csv"], ["no final model yet", "--resume"]),
    (["recipe", "validate", "{tmp}/nope.yaml"], ["recipe file not found"]),
])
def test_bad_arguments(argv, words, tiny_recipe, write_recipe, capsys, tmp_path):
    recipe = write_recipe(_quick(tiny_recipe))
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path, recipe=recipe) for a in argv]
    code, _, err = _run(capsys, *argv)
    _assert_one_line_error(code, err, *words)


def test_eval_with_a_missing_column(finished_run, capsys, write_table, sentences):
    data = write_table(sentences(5).drop(columns=["label"]), "nolabel.csv")
    code, _, err = _run(capsys, "eval", finished_run, "--data", data)
    _assert_one_line_error(code, err, "no column 'label'", str(data))


def test_predict_input_without_the_text_column(finished_run, capsys, write_table, sentences):
    data = write_table(sentences(3).rename(columns={"text": "body"}), "in.csv")
    code, _, err = _run(capsys, "predict", finished_run, "--input", data)
    _assert_one_line_error(code, err, "no column 'text'", "--text-column")


def test_real_process_prints_no_traceback(tiny_recipe, write_recipe, tmp_path):
    """The installed entry point, as a user runs it: one line on stderr, status 2."""
    recipe, _ = _recipe_variant(tiny_recipe, tmp_path, "missing column")
    result = subprocess.run([sys.executable, "-m", "tailorkit", "train", str(write_recipe(recipe))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    _assert_one_line_error(result.returncode, result.stderr, "no column 'review'")
    assert result.stdout == ""


def test_predict_file_of_text_pairs(tiny_recipe, write_table, sentences, capsys, tmp_path):
    from tailorkit import api
    from tailorkit.recipe import recipe_from_dict

    frame = sentences(80).assign(pair=lambda f: f["text"].str.split().str[0])
    recipe = {**tiny_recipe, "data": {**tiny_recipe["data"], "train": str(write_table(frame, "p.csv")),
                                      "text_pair_column": "pair"}}
    run = api.train(recipe_from_dict(recipe))
    rows = frame.head(3)
    inputs = write_table(rows, "in.csv")
    assert cli.main(["predict", str(run), "--input", str(inputs), "--output", str(tmp_path / "o.csv")]) == 0
    got = pd.read_csv(tmp_path / "o.csv")
    expected = api.predict(run, rows["text"].tolist(), rows["pair"].tolist())
    assert got["prediction"].tolist() == expected["prediction"].tolist()
    assert got["confidence"].tolist() == pytest.approx(expected["confidence"].tolist(), abs=1e-6)

    capsys.readouterr()
    assert cli.main(["predict", str(run), "--input", str(write_table(rows[["text"]], "no-pair.csv"))]) == 2
    assert "add the column 'pair'" in capsys.readouterr().err
