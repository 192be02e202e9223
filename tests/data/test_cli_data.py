"""`tailor data inspect | clean | augment` on real files: what they print and write, and their
one-line errors. The input files are never modified."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from tailorkit import cli

ROWS = pd.DataFrame({
    "text": ["good film", "Good  film", "bad film", "fish &amp; chips", "the plot was thin",
             "great acting and a great plot", "dull and slow", "good film"],
    "label": ["pos", "pos", "neg", "pos", "neg", "pos", "neg", "neg"]})


def _run(argv, capsys) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def table(tmp_path) -> Path:
    path = tmp_path / "reviews.csv"
    ROWS.to_csv(path, index=False)
    return path


def test_inspect_prints_and_writes_json_and_html(table, tmp_path, capsys):
    code, out, _ = _run(["data", "inspect", table, "--json", tmp_path / "r.json",
                         "--html", tmp_path / "r.html"], capsys)
    assert code == 0
    assert "8 rows" in out and "neg 4 (50.0%)" in out and "pos 4 (50.0%)" in out
    assert "exact duplicates (normalised text): 1 groups, 2 (25.0%) extra rows" in out
    assert json.loads((tmp_path / "r.json").read_text())["label_conflicts"]["groups"] == 1
    assert "<h1>Data inspection" in (tmp_path / "r.html").read_text()
    code, _, err = _run(["data", "inspect", table, "--json", tmp_path / "r.json"], capsys)
    assert code == 2 and f"--json {tmp_path / 'r.json'} already exists" in err


def test_clean_writes_a_new_table_and_its_record(table, tmp_path, capsys):
    before = _digest(table)
    out_file = tmp_path / "clean.csv"
    code, out, _ = _run(["data", "clean", table, "--output", out_file, "--label-errors", "off",
                         "--label-conflicts", "drop"], capsys)
    assert code == 0 and _digest(table) == before
    cleaned = pd.read_csv(out_file)
    assert "good film" not in cleaned["text"].tolist()  # three copies, two labels: dropped
    assert "fish & chips" in cleaned["text"].tolist()
    changes = pd.read_csv(tmp_path / "clean.changes.csv")
    assert set(changes[changes.action == "removed"]["reason"]) == {"label_conflict"}
    assert "removed 3: label_conflict 3" in out


def test_clean_reads_labels_as_training_does(tmp_path, capsys):
    """1 and 1.0 are one label in training, so one text under both is a duplicate, not a conflict."""
    path = tmp_path / "mixed.csv"
    pd.DataFrame({"text": ["same text here", "same text here", "another row", "more words"],
                  "label": ["1", "1.0", "two", "2"]}).to_csv(path, index=False)
    code, out, _ = _run(["data", "clean", path, "--output", tmp_path / "c.csv", "--label-errors", "off"],
                        capsys)
    assert code == 0 and "removed 1: duplicate 1" in out
    assert pd.read_csv(tmp_path / "c.csv", dtype=str)["label"].tolist() == ["1", "two", "2"]


def test_clean_whose_filters_remove_every_row_says_so(table, tmp_path, capsys):
    code, out, err = _run(["data", "clean", table, "--output", tmp_path / "c.csv", "--max-chars", 5], capsys)
    assert code == 0, err
    assert "label errors not searched: they need at least 2 classes" in out and "wrote 0 of 8 rows" in out


def test_clean_removes_rows_that_are_in_the_test_file(table, tmp_path, capsys):
    test = tmp_path / "test.csv"
    pd.DataFrame({"text": ["Bad film"], "label": ["neg"]}).to_csv(test, index=False)
    code, out, _ = _run(["data", "clean", table, "--test", test, "--output", tmp_path / "c.csv",
                         "--label-errors", "off"], capsys)
    assert code == 0 and "leakage 1" in out
    assert "bad film" not in pd.read_csv(tmp_path / "c.csv")["text"].tolist()


def test_augment_is_seeded(table, tmp_path, capsys):
    args = ["data", "augment", table, "--per-example", "2", "--ops", "swap", "delete", "--seed", "4"]
    assert _run([*args, "--output", tmp_path / "a.csv"], capsys)[0] == 0
    assert _run([*args, "--output", tmp_path / "b.csv"], capsys)[0] == 0
    a = pd.read_csv(tmp_path / "a.csv")
    assert len(a) == 8 * 3 and a.equals(pd.read_csv(tmp_path / "b.csv"))
    assert len(pd.read_csv(tmp_path / "a.changes.csv")) == 16


def test_bad_input_gets_one_line_errors(table, tmp_path, capsys):
    code, _, err = _run(["data", "inspect", table, "--text-column", "review"], capsys)
    assert code == 2 and "no column 'review'" in err and "--text-column" in err and err.count("\n") == 1
    code, _, err = _run(["data", "inspect", tmp_path / "missing.csv"], capsys)
    assert code == 2 and "missing.csv" in err and "no such file" in err
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\nfine,pos\ncaf\xe9 noir,pos\n".encode("latin-1"))
    code, _, err = _run(["data", "inspect", latin], capsys)
    assert code == 2 and "latin.csv" in err and "line 3" in err and "--encoding" in err
    code, out, _ = _run(["data", "inspect", latin, "--encoding", "latin-1"], capsys)
    assert code == 0 and "2 rows" in out
    garbage = tmp_path / "bad.parquet"
    garbage.write_bytes(b"not a parquet file")
    code, _, err = _run(["data", "inspect", garbage], capsys)
    assert code == 2 and "bad.parquet" in err and "cannot read" in err
    code, _, err = _run(["data", "clean", table, "--output", table, "--force"], capsys)
    assert code == 2 and "never overwrites your data" in err
    code, _, err = _run(["data", "clean", table, "--output", tmp_path / "x.csv", "--near-duplicates", "2"],
                        capsys)
    assert code == 2 and "near-duplicates" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--per-example", 0], "error: --per-example is 0, --balance is off and there is no --back-translate or "
                           "--paraphrase: nothing would be added\n"),
    (["--alpha", 7], "error: --alpha: Input should be less than or equal to 0.5\n"),
    (["--back-translate", "no_where", "no_where_back"],
     "error: --back-translate (forward model): 'no_where' is neither a local folder nor a catalogue model"),
])
def test_augment_errors_name_the_command_s_flags(argv, message, table, tmp_path, capsys):
    """Not the recipe's fields (data.augment.back_translation.forward), nor an empty field name;
    and a file name keeps its underscores."""
    code, _, err = _run(["data", "augment", table, "--output", tmp_path / "a.csv", *argv], capsys)
    assert code == 2 and err.startswith(message), err


def test_labels_says_how_to_read_numeric_labels(tmp_path, capsys):
    """A 1/3/5 rating has few distinct values: guessed as classes, unless --labels says otherwise."""
    path = tmp_path / "stars.csv"
    pd.DataFrame({"text": ["a b", "c d", "e f", "g h", "i j"], "label": [1, 3, 5, 1, 5]}).to_csv(path,
                                                                                             index=False)
    assert "classes (3" in _run(["data", "inspect", path], capsys)[1]
    assert "target: mean 3" in _run(["data", "inspect", path, "--labels", "numbers"], capsys)[1]
    code, _, err = _run(["data", "inspect", path, "--labels", "numbers", "--label-errors", "tfidf"], capsys)
    assert code == 2 and "has no class labels" in err
    pd.DataFrame({"text": ["a", "b"], "label": [1, "two"]}).to_csv(tmp_path / "words.csv", index=False)
    code, _, err = _run(["data", "clean", tmp_path / "words.csv", "--output", tmp_path / "o.csv", "--labels",
                         "numbers"], capsys)
    assert code == 2 and "--labels numbers: column 'label' row 2 holds 'two', not a number" in err
    code, _, err = _run(["data", "augment", path, "--output", tmp_path / "a.csv", "--labels", "numbers",
                         "--balance"], capsys)  # it did per-example rows instead, silently
    assert code == 2 and "--balance and --max-per-class even out classes, and " in err
