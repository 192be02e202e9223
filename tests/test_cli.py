"""`tailor` end to end on the tiny model; bad input gives one line and exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_sentences, recipe_dict, trusting_copy
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


def test_methods_prints_defaults_as_yaml(capsys):
    """Defaults read as a recipe writes them (null, true, [], {}), not as Python (None, True)."""
    code, out, _ = _run(capsys, "methods")
    assert code == 0
    for line in ("    size = null", "    standardize = true", "    bias = false", "    include = []",
                 "    options = {}", "    placement = pfeiffer", "    r = 8", "    head_lr = 0.001"):
        assert line + " " in out or out.count(line + "\n"), line
    for python in (" = None", " = True", " = False", " = '"):
        assert python not in out, python


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
    if kind == "unknown method":  # the checks of the methods cannot run: a second line says so
        err, note = err.rsplit("\n", 2)[0] + "\n", err.splitlines()[-1]
        assert note.endswith("the checks that combine fields (task, methods, search) run once the "
                             "problems above are fixed")
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


def test_an_empty_or_missing_file_or_run_is_named_by_its_flag(finished_run, capsys, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    code, _, err = _run(capsys, "eval", finished_run, "--data", str(empty))
    _assert_one_line_error(code, err, f"--data: {empty}: the file is empty")
    code, _, err = _run(capsys, "predict", finished_run, "--input", str(empty))
    _assert_one_line_error(code, err, f"--input: {empty}: the file is empty")
    out = str(tmp_path / "x")
    code, _, err = _run(capsys, "export", str(tmp_path / "gone"), "--format", "onnx", "--out", out)
    _assert_one_line_error(code, err, "gone: no such run directory")
    code, _, err = _run(capsys, "export", finished_run, "--format", "onnx", "--out", out, "--samples", "-3")
    _assert_one_line_error(code, err, "--samples -3", "or 0 for the whole test split")
    assert not (tmp_path / "x").exists()


def test_predict_input_with_an_empty_text_or_no_rows(finished_run, capsys, write_table, sentences, tmp_path):
    rows = sentences(3)
    rows.loc[1, "text"] = None
    code, _, err = _run(capsys, "predict", finished_run, "--input", write_table(rows, "gap.csv"))
    _assert_one_line_error(code, err, "row 2: empty text in column 'text'")
    header = tmp_path / "header.csv"
    header.write_text("text,label\n")
    code, _, err = _run(capsys, "predict", finished_run, "--input", str(header))
    _assert_one_line_error(code, err, "has no rows", str(header))


# -- a file with other column names than the run's recipe (#21 item 7) ----------------------------------

@pytest.fixture
def renamed(write_table, sentences):
    """The same held-out rows under the recipe's column names and under others."""
    frame = sentences(30, seed=5)
    return (write_table(frame, "holdout.csv"),
            write_table(frame.rename(columns={"text": "review", "label": "stars"}), "reviews.csv"))


def test_eval_says_which_flag_names_a_column(finished_run, capsys, renamed):
    code, _, err = _run(capsys, "eval", finished_run, "--data", renamed[1])
    _assert_one_line_error(code, err, "no column 'text' (columns: review, stars, score)",
                           "name the right one with --text-column")
    assert "data.text_column" not in err
    code, _, err = _run(capsys, "eval", finished_run, "--data", renamed[1], "--text-column", "review")
    _assert_one_line_error(code, err, "no column 'label'", "name the right one with --label-column")


def test_eval_reads_the_columns_its_flags_name(finished_run, capsys, renamed):
    code, out, _ = _run(capsys, "eval", finished_run, "--data", renamed[0])
    assert code == 0
    code, renamed_out, _ = _run(capsys, "eval", finished_run, "--data", renamed[1], "--text-column", "review",
                                "--label-column", "stars")
    assert code == 0 and json.loads(renamed_out) == json.loads(out)


def test_eval_names_the_flag_for_a_label_the_run_does_not_know(finished_run, capsys, write_table, sentences):
    data = write_table(sentences(5).assign(label="pos", other=["pos", "meh", "neg", "pos", "neg"]), "x.csv")
    code, _, err = _run(capsys, "eval", finished_run, "--data", data, "--label-column", "other")
    _assert_one_line_error(code, err, "row 2: label 'meh' was not seen in training",
                           "the run knows only these", "--label-column")
    assert "add it to train" not in err


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_a_pair_column_for_a_run_without_pairs_is_refused(command, finished_run, capsys, renamed):
    flag = "--data" if command == "eval" else "--input"
    code, _, err = _run(capsys, command, finished_run, flag, renamed[0], "--text-pair-column", "score")
    _assert_one_line_error(code, err, "not trained on text pairs", "drop --text-pair-column")


def test_predict_column_flags_go_with_input(finished_run, capsys):
    code, _, err = _run(capsys, "predict", finished_run, "--text", "a film", "--text-column", "review")
    _assert_one_line_error(code, err, "name columns of --input")


def test_real_process_prints_no_traceback(tiny_recipe, write_recipe, tmp_path):
    """The installed entry point, as a user runs it: one line on stderr, status 2."""
    recipe, _ = _recipe_variant(tiny_recipe, tmp_path, "missing column")
    result = subprocess.run([sys.executable, "-m", "tailorkit", "train", str(write_recipe(recipe))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    _assert_one_line_error(result.returncode, result.stderr, "no column 'review'")
    assert result.stdout == ""


# -- text pairs ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pair_run(tiny_model_dir, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """A run trained on text pairs (data.text_pair_column: pair), and its table."""
    from tailorkit import api
    from tailorkit.recipe import recipe_from_dict

    root = tmp_path_factory.mktemp("pairs")
    frame = make_sentences(80).assign(pair=lambda f: f["text"].str.split().str[0])
    frame.to_csv(root / "p.csv", index=False)
    recipe = recipe_dict(tiny_model_dir, root / "p.csv", root / "run")
    recipe["data"]["text_pair_column"] = "pair"
    return api.train(recipe_from_dict(recipe)), frame


def test_predict_file_of_text_pairs(pair_run, write_table, capsys, tmp_path):
    from tailorkit import api

    run, frame = pair_run
    rows = frame.head(3)
    inputs = write_table(rows, "in.csv")
    assert cli.main(["predict", str(run), "--input", str(inputs), "--output", str(tmp_path / "o.csv")]) == 0
    got = pd.read_csv(tmp_path / "o.csv")
    expected = api.predict(run, rows["text"].tolist(), rows["pair"].tolist())
    assert got["prediction"].tolist() == expected["prediction"].tolist()
    assert got["confidence"].tolist() == pytest.approx(expected["confidence"].tolist(), abs=1e-6)
    assert list(got.columns[:3]) == ["text", "text_pair", "prediction"]
    assert got["text_pair"].tolist() == rows["pair"].tolist()

    capsys.readouterr()
    assert cli.main(["predict", str(run), "--input", str(write_table(rows[["text"]], "no-pair.csv"))]) == 2
    err = capsys.readouterr().err
    assert "no column 'pair' (columns: text)" in err and "--text-pair-column" in err


def test_predict_text_pairs_on_the_command_line(pair_run, capsys, tmp_path):
    from tailorkit import api

    run, frame = pair_run
    texts, pairs = frame["text"].head(2).tolist(), frame["pair"].head(2).tolist()
    argv = ["predict", run, "--text", texts[0], "--text-pair", pairs[0], "--text", texts[1],
            "--text-pair", pairs[1]]
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    assert out.splitlines()[0].split() == ["text", "text_pair", "prediction", "confidence"]
    expected = api.predict(run, texts, pairs)
    code, _, _ = _run(capsys, *argv, "--output", tmp_path / "o.csv")
    got = pd.read_csv(tmp_path / "o.csv")
    assert code == 0 and got["text_pair"].tolist() == pairs
    assert got["prediction"].tolist() == expected["prediction"].tolist()
    assert got["confidence"].tolist() == pytest.approx(expected["confidence"].tolist(), abs=1e-6)


def test_predict_refuses_a_pair_run_without_pairs(pair_run, capsys):
    """No silent answers from the first text alone: the run needs both."""
    from tailorkit import api
    from tailorkit.errors import TailorError

    run, _ = pair_run
    code, out, err = _run(capsys, "predict", run, "--text", "a good film")
    _assert_one_line_error(code, err, "trained on text pairs", "--text-pair", "'pair' column")
    assert out == ""
    with pytest.raises(TailorError, match="trained on text pairs"):
        api.predict(run, ["a good film"])


@pytest.mark.parametrize(("argv", "words"), [
    (["--text", "a", "--text", "b", "--text-pair", "x"], ["2 --text but 1 --text-pair"]),
    (["--text", "a", "--text-pair", "x", "--text-pair", "y"], ["1 --text but 2 --text-pair"]),
    (["--input", "in.csv", "--text-pair", "x"], ["--text-pair goes with --text"]),
])
def test_predict_refuses_mismatched_pairs(argv, words, pair_run, capsys):
    code, _, err = _run(capsys, "predict", pair_run[0], *argv)
    _assert_one_line_error(code, err, *words)


def test_predict_refuses_pairs_for_a_run_without_them(finished_run, capsys):
    from tailorkit import api
    from tailorkit.errors import TailorError

    code, _, err = _run(capsys, "predict", finished_run, "--text", "a good film", "--text-pair", "good")
    _assert_one_line_error(code, err, "not trained on text pairs", "--text-pair")
    with pytest.raises(TailorError, match="not trained on text pairs"):
        api.predict(finished_run, ["a good film"], ["good"])


def test_pair_columns_of_other_names(pair_run, write_table, capsys, tmp_path):
    """predict --input and eval --data read the pair from the columns the flags name."""
    run, frame = pair_run
    rows = frame.head(6)
    names = {"text": "premise", "pair": "hypothesis", "label": "gold"}
    other = write_table(rows.rename(columns=names), "o.csv")
    argv = ["--text-column", "premise", "--text-pair-column", "hypothesis"]
    code, _, _ = _run(capsys, "predict", run, "--input", other, *argv, "--output", tmp_path / "out-o.csv")
    code_same, _, _ = _run(capsys, "predict", run, "--input", write_table(rows, "s.csv"),
                           "--output", tmp_path / "out-s.csv")
    assert code == code_same == 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out-o.csv"), pd.read_csv(tmp_path / "out-s.csv"))
    code, out, _ = _run(capsys, "eval", run, "--data", other, *argv, "--label-column", "gold")
    assert code == 0 and json.loads(out)["accuracy"] >= 0


def test_pair_runs_write_both_texts(pair_run, capsys, write_table, tmp_path):
    """predictions_test.csv and `tailor eval --output` hold the second text beside the first."""
    run, frame = pair_run
    test = pd.read_csv(run / "predictions_test.csv")
    assert list(test.columns[:3]) == ["text", "text_pair", "label"]
    assert test["text_pair"].tolist() == test["text"].str.split().str[0].tolist()  # each row's own

    data = write_table(frame.tail(10), "holdout.csv")
    code, _, _ = _run(capsys, "eval", run, "--data", data, "--output", tmp_path / "scored.csv")
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert code == 0 and list(scored.columns[:3]) == ["text", "text_pair", "label"]
    assert scored["text_pair"].tolist() == frame["pair"].tail(10).tolist()


# -- output into a pipe ----------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["methods", "eval"])
def test_a_reader_that_stops_early_ends_the_command_quietly(command, finished_run, tmp_path):
    """`tailor methods | head -1`: the reader is gone before the output is written (here from
    the start, so the write surely fails): no BrokenPipeError traceback, exit 141."""
    make_sentences(10, seed=3).to_csv(tmp_path / "holdout.csv", index=False)
    argv = {"methods": ["methods"],
            "eval": ["eval", str(finished_run), "--data", str(tmp_path / "holdout.csv")]}
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, "-m", "tailorkit", *argv[command]], stdout=write,
                                stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
    assert result.returncode == 141


def test_a_field_found_wrong_while_the_recipe_runs_names_the_recipe_file_or_the_set(tiny_recipe, write_recipe,
                                                                                   capsys):
    path = write_recipe({**tiny_recipe, "model": {"name": "minilm-l5"}})
    assert cli.main(["train", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: model.name: 'minilm-l5' is neither a local folder") and \
        err.rstrip().endswith("did you mean 'minilm-l6'?")
    assert not Path(tiny_recipe["output_dir"]).exists()
    assert cli.main(["train", str(path), "--set", "model.name=nowhere"]) == 2
    assert capsys.readouterr().err.startswith("error: --set model.name=nowhere: model.name: 'nowhere'")


def test_ctrl_c_in_any_command_stops_it_with_130_and_no_traceback(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "methods", interrupted)
    assert cli.main(["methods"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


# -- never touch a user's file (#15) -------------------------------------------------------------------

@pytest.mark.parametrize("command", ["predict", "eval"])
def test_an_existing_output_is_replaced_only_with_force(command, finished_run, capsys, write_table, sentences,
                                                        tmp_path):
    data = write_table(sentences(6), "in.csv")
    out = tmp_path / "kept.csv"
    out.write_text("the user's own file\n")
    argv = [command, finished_run, "--input" if command == "predict" else "--data", data, "--output", out]
    code, _, err = _run(capsys, *argv)
    _assert_one_line_error(code, err, f"--output {out} already exists", "--force")
    assert out.read_text() == "the user's own file\n"
    assert _run(capsys, *argv, "--force")[0] == 0
    assert len(pd.read_csv(out)) == 6


@pytest.mark.parametrize("command", ["predict", "eval"])
def test_the_output_is_never_the_input_even_with_force(command, finished_run, capsys, write_table, sentences):
    data = write_table(sentences(6), "labelled.csv")
    original = data.read_bytes()
    flag = "--input" if command == "predict" else "--data"
    code, _, err = _run(capsys, command, finished_run, flag, data, "--output", data, "--force")
    _assert_one_line_error(code, err, f"--output must differ from {flag}", "not even with --force")
    assert data.read_bytes() == original


def test_merge_refuses_an_out_that_is_a_file(finished_run, capsys, tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("mine\n")
    code, _, err = _run(capsys, "merge", finished_run, "--out", out)
    _assert_one_line_error(code, err, f"--out {out} is a file")
    assert out.read_text() == "mine\n"


# -- trust: a received run folder runs no code unless the command line allows it (#15) ----------------

TRUST_COMMANDS = {
    "predict": ["--text", "a lovely film"],
    "eval": ["--data", "{data}"],
    "merge": ["--out", "{tmp}/merged"],
    "generate": ["--prompt", "hello"],
    "chat": [],
    "compress": ["{tmp}/compress.yaml"],
}


@pytest.mark.parametrize("command", TRUST_COMMANDS)
def test_a_run_that_trusts_remote_code_needs_the_flag(command, finished_run, capsys, write_table, sentences,
                                                      tmp_path):
    run = trusting_copy(finished_run, tmp_path / "received")
    data = write_table(sentences(6), "holdout.csv")
    (tmp_path / "compress.yaml").write_text("steps: [quantize]\n")
    extra = [a.format(tmp=tmp_path, data=data) for a in TRUST_COMMANDS[command]]
    code, _, err = _run(capsys, command, run, *extra)
    _assert_one_line_error(code, err, f"{run}: its recipe turns on model.trust_remote_code",
                           "pass --trust-remote-code to allow it")
    code, _, err = _run(capsys, command, run, *extra, "--trust-remote-code")
    assert "trust_remote_code" not in err  # allowed: the command goes on (and may refuse for its own reasons)
    if command in ("predict", "eval"):
        assert code == 0, err


def test_several_adapter_runs_need_the_flag_too(tiny_model_dir, sentiment_csv, capsys, tmp_path):
    from tailorkit import api
    from tailorkit.recipe import recipe_from_dict

    raw = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "lora", max_steps=2)
    lora = api.train(recipe_from_dict({**raw, "methods": [{"lora": {"r": 2}}]}))
    runs = [trusting_copy(lora, tmp_path / name) for name in ("a", "b")]
    argv = ["predict", *runs, "--adapter", "a", "--text", "a lovely film"]
    code, _, err = _run(capsys, *argv)
    _assert_one_line_error(code, err, "its recipe turns on model.trust_remote_code", "--trust-remote-code")
    assert _run(capsys, *argv, "--trust-remote-code")[0] == 0


# -- resume after the data changed (#15) ------------------------------------------------------------

def test_resume_takes_allow_data_change(tiny_recipe, write_recipe, capsys, crash_before):
    crash_before(4)
    recipe = write_recipe(tiny_recipe)
    with pytest.raises(SystemExit):
        _run(capsys, "train", recipe)
    capsys.readouterr()
    crash_before(None)
    run = tiny_recipe["output_dir"]
    make_sentences(120, seed=5).to_csv(tiny_recipe["data"]["train"], index=False)  # edited meanwhile
    code, _, err = _run(capsys, "train", "--resume", run)
    _assert_one_line_error(code, err, "data changed since the run started", "--allow-data-change")
    code, _, err = _run(capsys, "train", recipe, "--allow-data-change")
    _assert_one_line_error(code, err, "--allow-data-change goes with --resume")
    code, out, _ = _run(capsys, "train", "--resume", run, "--allow-data-change")
    assert code == 0 and f"run: {run}" in out
