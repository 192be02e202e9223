"""From the recipe's data section to checked train/validation/test splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tailorkit.config import DataConfig
from tailorkit.data.prepare import prepare_data, random_split
from tailorkit.errors import TailorError


def _cfg(**fields) -> DataConfig:
    return DataConfig.model_validate(fields)


def _error(cfg: DataConfig, classes: bool = True) -> str:
    with pytest.raises(TailorError) as info:
        prepare_data(cfg, classes)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- sources and columns ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["train.csv", "train.tsv", "train.jsonl", "train.parquet", "train_ds"])
def test_every_format_gives_the_same_splits(name, sentences, write_table):
    frame = sentences(60)
    reference = prepare_data(_cfg(train=str(write_table(frame, "ref.csv"))), classes=True)
    data = prepare_data(_cfg(train=str(write_table(frame, name))), classes=True)
    assert data.labels == reference.labels == ["neg", "pos"]
    for split in ("train", "validation", "test"):
        assert data.splits[split].texts == reference.splits[split].texts
        np.testing.assert_array_equal(data.splits[split].targets, reference.splits[split].targets)


def test_given_validation_and_test_files_are_used_as_they_are(sentences, write_table):
    train, val, test = sentences(40, seed=1), sentences(12, seed=2), sentences(10, seed=3)
    data = prepare_data(_cfg(train=str(write_table(train, "tr.csv")),
                             validation=str(write_table(val, "va.jsonl")),
                             test=str(write_table(test, "te.parquet"))), classes=True)
    assert data.splits["train"].texts == list(train.text)
    assert data.splits["validation"].texts == list(val.text)
    assert data.splits["test"].texts == list(test.text)
    np.testing.assert_array_equal(data.splits["test"].targets, (test.label == "pos").astype(int))


def test_given_test_file_and_carved_validation(sentences, write_table):
    train, test = sentences(50, seed=1), sentences(10, seed=3)
    data = prepare_data(_cfg(train=str(write_table(train, "tr.csv")), test=str(write_table(test, "te.csv")),
                             split={"validation": 0.2}), classes=True)
    assert len(data.splits["validation"]) == 10 and len(data.splits["train"]) == 40
    assert data.splits["test"].texts == list(test.text)
    assert "validation split" in data.splits["validation"].source


def test_dataset_dict_folder_brings_its_own_splits(sentences, tmp_path):
    import datasets

    parts = {"train": sentences(30, 1), "valid": sentences(8, 2), "test": sentences(6, 3)}
    datasets.DatasetDict({k: datasets.Dataset.from_pandas(v, preserve_index=False)
                          for k, v in parts.items()}).save_to_disk(str(tmp_path / "dd"))
    data = prepare_data(_cfg(train=str(tmp_path / "dd")), classes=True)
    assert data.splits["train"].texts == list(parts["train"].text)
    assert data.splits["validation"].texts == list(parts["valid"].text)
    assert data.splits["test"].texts == list(parts["test"].text)


def test_column_mapping_for_text_pair_and_label(write_table):
    frame = pd.DataFrame({
        "premise": [f"premise {i}" for i in range(20)],
        "hypothesis": [f"hypothesis {i}" for i in range(20)],
        "gold": ["entail", "contradict"] * 10,
        "text": ["decoy"] * 20,
    })
    cfg = _cfg(train=str(write_table(frame, "nli.csv")), text_column="premise",
               text_pair_column="hypothesis", label_column="gold", split={"validation": 0.2, "test": 0.2})
    data = prepare_data(cfg, classes=True)
    assert data.labels == ["contradict", "entail"]
    train = data.splits["train"]
    assert all(t.startswith("premise ") for t in train.texts)
    assert [p.replace("hypothesis", "premise") for p in train.pairs] == train.texts
    idx = [int(t.split()[1]) for t in train.texts]
    expected = [0 if frame.gold[i] == "contradict" else 1 for i in idx]
    assert train.targets.tolist() == expected


def test_numeric_labels_sort_as_numbers(write_table):
    frame = pd.DataFrame({"text": [f"t {i}" for i in range(30)], "label": [10, 2, 1] * 10})
    data = prepare_data(_cfg(train=str(write_table(frame, "n.csv"))), classes=True)
    assert data.labels == ["1", "2", "10"]
    train = data.splits["train"]
    for text, target in zip(train.texts, train.targets, strict=True):
        assert data.labels[target] == str(frame.label[int(text.split()[1])])


def test_regression_targets_are_floats(sentences, write_table):
    frame = sentences(40)
    data = prepare_data(_cfg(train=str(write_table(frame, "r.csv")), label_column="score"), classes=False)
    assert data.labels == [] and data.num_labels == 1
    train = data.splits["train"]
    assert train.targets.dtype == np.float32
    by_text = dict(zip(frame.text, frame.score, strict=False))
    assert all(abs(by_text[t] - y) < 1e-6 for t, y in zip(train.texts, train.targets, strict=True))


def test_max_samples_take_a_seeded_subset(sentences, write_table):
    path = str(write_table(sentences(100), "s.csv"))
    cfg = _cfg(train=path, max_train_samples=15, max_eval_samples=4)
    a, b = prepare_data(cfg, classes=True), prepare_data(cfg, classes=True)
    assert [len(a.splits[s]) for s in ("train", "validation", "test")] == [15, 4, 4]
    assert a.splits["train"].texts == b.splits["train"].texts
    full = prepare_data(_cfg(train=path), classes=True)
    assert set(a.splits["train"].texts) <= set(full.splits["train"].texts)


# -- seeded, stratified splitting -----------------------------------------------------------------

def _split_texts(path: str, seed: int, **split) -> dict[str, list[str]]:
    data = prepare_data(_cfg(train=path, split={"seed": seed, **split}), classes=True)
    return {name: s.texts for name, s in data.splits.items()}


@pytest.fixture
def skewed_csv(write_table):
    """200 rows, 30% positive, unique texts."""
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(200)],
                          "label": ["pos" if i % 10 < 3 else "neg" for i in range(200)]})
    return str(write_table(frame, "skewed.csv"))


def test_split_is_a_partition_with_the_requested_sizes(skewed_csv):
    splits = _split_texts(skewed_csv, 0, validation=0.1, test=0.2)  # fractions of the whole file
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [140, 20, 40]
    all_texts = splits["train"] + splits["validation"] + splits["test"]
    assert sorted(all_texts) == sorted(f"row {i}" for i in range(200))


def test_same_seed_same_split_different_seed_different(skewed_csv):
    assert _split_texts(skewed_csv, 3) == _split_texts(skewed_csv, 3)
    a, b = _split_texts(skewed_csv, 3), _split_texts(skewed_csv, 4)
    assert a["test"] != b["test"] and a["validation"] != b["validation"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stratified_split_keeps_class_ratios(skewed_csv, seed):
    data = prepare_data(_cfg(train=skewed_csv, split={"seed": seed, "validation": 0.2, "test": 0.2}),
                        classes=True)
    pos = data.labels.index("pos")
    for name, split in data.splits.items():
        ratio = float(np.mean(split.targets == pos))
        assert abs(ratio - 0.3) <= 0.02, (name, ratio)


def test_unstratified_split_is_also_seeded(skewed_csv):
    a = _split_texts(skewed_csv, 5, stratify=False)
    assert a == _split_texts(skewed_csv, 5, stratify=False)
    assert a != _split_texts(skewed_csv, 5, stratify=True)


@pytest.mark.parametrize(("rows", "n_out", "seed"), [(10, 1, 0), (200, 37, 3), (1738, 217, 42)])
def test_random_split_is_sklearns_unstratified_split(rows, n_out, seed):
    """The split carved without importing scikit-learn picks the very rows train_test_split does."""
    from sklearn.model_selection import train_test_split

    frame = pd.DataFrame({"text": [f"row {i}" for i in range(rows)]}, index=np.arange(rows)[::-1] * 3)
    rest, out = random_split(frame, n_out, seed)
    want_rest, want_out = train_test_split(frame, test_size=n_out, random_state=seed)
    pd.testing.assert_frame_equal(rest, want_rest)
    pd.testing.assert_frame_equal(out, want_out)


# -- bad input: one line that names the file, row or column ------------------------------------------

def test_missing_column_lists_the_available_ones(sentences, write_table):
    path = write_table(sentences(20), "s.csv")
    message = _error(_cfg(train=str(path), text_column="review"))
    assert str(path) in message
    assert "no column 'review' (columns: text, label, score)" in message
    assert "data.text_column" in message


def test_a_json_object_holding_the_rows_says_so(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text('{"data": [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]}')
    message = _error(_cfg(train=str(path)))
    assert "no column 'text' (columns: data); the file is one JSON object whose 'data' holds 2 rows" \
        in message


def test_missing_label_column_in_the_validation_file(sentences, write_table):
    train = write_table(sentences(20), "tr.csv")
    val = write_table(sentences(5).drop(columns=["label"]), "va.csv")
    message = _error(_cfg(train=str(train), validation=str(val)))
    assert message.startswith(f"{val}: no column 'label'")
    assert "data.label_column" in message


@pytest.mark.parametrize("value", ["", "   ", None])
def test_empty_text_names_the_row(sentences, write_table, value):
    frame = sentences(20)
    frame.loc[6, "text"] = value
    train = write_table(frame, "tr.csv")
    val, test = write_table(sentences(6, 1), "va.csv"), write_table(sentences(6, 2), "te.csv")
    message = _error(_cfg(train=str(train), validation=str(val), test=str(test)))
    assert message.startswith(f"{train}: row 7: empty text in column 'text'")


def test_empty_text_row_refers_to_the_users_file_even_after_splitting(sentences, write_table):
    frame = sentences(100)
    frame.loc[56, "text"] = ""
    train = write_table(frame, "tr.csv")
    message = _error(_cfg(train=str(train)))
    assert "row 57: empty text" in message
    assert str(train) in message


def test_empty_pair_text_names_the_pair_column(write_table):
    frame = pd.DataFrame({"a": [f"x {i}" for i in range(10)], "b": ["y"] * 9 + [""],
                          "label": ["p", "q"] * 5})
    path = write_table(frame, "pairs.csv")
    message = _error(_cfg(train=str(path), validation=str(path), test=str(path), text_column="a",
                          text_pair_column="b"))
    assert "row 10: empty text in column 'b'" in message


def test_label_in_validation_not_seen_in_train(sentences, write_table):
    val = sentences(6, 1)
    val.loc[3, "label"] = "neutral"
    train, valp = write_table(sentences(20), "tr.csv"), write_table(val, "va.csv")
    message = _error(_cfg(train=str(train), validation=str(valp), test=str(valp)))
    assert message.startswith(f"{valp}: row 4: label 'neutral' was not seen in training")
    assert "known labels: neg, pos" in message


def test_missing_label_value_names_the_row(sentences, write_table):
    frame = sentences(20)
    frame.loc[2, "label"] = None
    path = write_table(frame, "tr.csv")
    message = _error(_cfg(train=str(path), validation=str(path), test=str(path)))
    assert "row 3" in message and "label" in message


def test_single_class_is_refused(write_table):
    frame = pd.DataFrame({"text": [f"t {i}" for i in range(20)], "label": ["spam"] * 20})
    message = _error(_cfg(train=str(write_table(frame, "one.csv"))))
    assert "has one class ('spam')" in message and "task: regression" in message


@pytest.mark.parametrize("bad", [float("nan"), "high", float("inf")])
def test_regression_target_must_be_a_finite_number(sentences, write_table, bad):
    frame = sentences(20).astype({"score": object})
    frame.loc[4, "score"] = bad
    path = write_table(frame, "r.csv")
    message = _error(_cfg(train=str(path), validation=str(path), test=str(path), label_column="score"),
                     classes=False)
    assert message.startswith(f"{path}: row 5: target")
    assert "column 'score'" in message and "not a finite number" in message


def test_missing_file_names_the_field(tmp_path):
    message = _error(_cfg(train=str(tmp_path / "gone.csv")))
    assert message == f"data.train: file not found: {tmp_path / 'gone.csv'}"


def test_missing_validation_file_names_its_field(sentences, write_table, tmp_path):
    train = write_table(sentences(20), "tr.csv")
    message = _error(_cfg(train=str(train), validation=str(tmp_path / "va.csv")))
    assert message.startswith("data.validation: file not found")


def test_unknown_catalogue_name():
    assert "unknown catalogue dataset 'nope'" in _error(_cfg(name="nope"))


def test_empty_file(write_table):
    path = write_table(pd.DataFrame({"text": [], "label": []}), "empty.parquet")
    assert "has no rows" in _error(_cfg(train=str(path)))


def test_split_fraction_zero_without_a_file(sentences, write_table):
    path = write_table(sentences(20), "s.csv")
    message = _error(_cfg(train=str(path), split={"validation": 0.0}))
    assert "data.split.validation is 0 and no data.validation file was given" in message


def test_too_few_rows_for_the_split(sentences, write_table):
    path = write_table(sentences(5), "s.csv")
    message = _error(_cfg(train=str(path)))
    assert "split is empty after splitting" in message and str(path) in message


def test_fractions_above_the_whole_file_are_refused(sentences, write_table):
    path = write_table(sentences(20), "s.csv")
    message = _error(_cfg(train=str(path), split={"validation": 0.6, "test": 0.6, "stratify": False}))
    assert "the validation split is empty after splitting 8 rows" in message


def test_dataset_dict_without_a_train_split(sentences, tmp_path):
    import datasets

    datasets.DatasetDict({"fit": datasets.Dataset.from_pandas(sentences(10), preserve_index=False)}
                         ).save_to_disk(str(tmp_path / "dd"))
    message = _error(_cfg(train=str(tmp_path / "dd")))
    assert message.startswith("data.train: ") and "no 'train' split" in message


def test_row_numbers_ignore_an_index_stored_in_the_file(sentences, write_table, tmp_path):
    frame = sentences(20)
    frame.index = [f"id-{i}" for i in range(20)]
    frame.loc["id-8", "text"] = ""
    frame.to_parquet(tmp_path / "indexed.parquet")  # pandas stores the string index
    path = str(tmp_path / "indexed.parquet")
    message = _error(_cfg(train=path, validation=path, test=path))
    assert "row 9: empty text" in message


# -- whole numbers written as decimals are the same labels (#21 item 8) -------------------------------

def test_decimal_whole_number_labels_match_integer_ones(write_table, capsys):
    """Train labels 1, 3, 5; evaluation labels 5.0 and 1.0 (a JSON number, or a CSV column with
    a gap): the same classes, with one note on stderr."""
    train = pd.DataFrame({"text": [f"t {i}" for i in range(30)], "label": [1, 3, 5] * 10})
    test = pd.DataFrame({"text": ["a", "b", "c"], "label": [5.0, 1.0, 3.0]})
    tr, te = write_table(train, "tr.csv"), write_table(test, "te.csv")
    data = prepare_data(_cfg(train=str(tr), test=str(te)), classes=True)
    assert data.labels == ["1", "3", "5"]
    assert [data.labels[t] for t in data.splits["test"].targets] == ["5", "1", "3"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"note: {te}: column 'label' holds whole numbers written as decimals" in err
    assert "(5.0 -> 5)" in err


def test_labels_of_a_fixed_class_list_are_read_the_same_way(write_table, capsys):
    frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [2.0, 10.0, None, 2.0]}).dropna()
    path = str(write_table(frame, "e.csv"))
    data = prepare_data(_cfg(train=path, validation=path, test=path), classes=True, labels=["2", "10"])
    assert data.splits["test"].targets.tolist() == [0, 1, 0]
    assert capsys.readouterr().err.count("note: ") == 1  # one file: one note


def test_a_decimal_written_as_text_beside_words_is_the_same_label(write_table, capsys):
    """A CSV column holding 1, 1.0, 2 and two is read as text: "1.0" is still the label 1."""
    path = write_table(pd.DataFrame({"text": [f"t {i}" for i in range(40)],
                                     "label": ["1", "1.0", "2", "two"] * 10}), "mixed.csv")
    data = prepare_data(_cfg(train=str(path)), classes=True)
    assert data.labels == ["1", "2", "two"]
    assert "(1.0 -> 1)" in capsys.readouterr().err


def test_other_labels_are_left_as_they_are(write_table, capsys):
    frame = pd.DataFrame({"text": [f"t {i}" for i in range(20)], "label": [0.5, 2.5] * 10})
    data = prepare_data(_cfg(train=str(write_table(frame, "f.csv"))), classes=True)
    assert data.labels == ["0.5", "2.5"] and "note" not in capsys.readouterr().err
    frame["label"] = ["v1.0", "1.5", "10", "1e3"] * 5  # text, never a whole decimal
    data = prepare_data(_cfg(train=str(write_table(frame, "g.csv"))), classes=True)
    assert data.labels == ["1.5", "10", "1e3", "v1.0"] and "note" not in capsys.readouterr().err


# -- a class too small to stratify is named (#21 item 9) ----------------------------------------------

def test_a_class_with_one_example_is_named_when_stratification_stops(write_table, capsys):
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(41)], "label": ["pos", "neg"] * 20 + ["meh"]})
    path = write_table(frame, "lone.csv")
    prepare_data(_cfg(train=str(path)), classes=True)
    err = capsys.readouterr().err
    assert err == (f"warning: {path}: class 'meh' has a single example, so the test and validation "
                   "splits are not stratified (drawn at random) and may lack it\n")


def test_no_warning_when_every_class_can_be_stratified(skewed_csv, capsys):
    prepare_data(_cfg(train=skewed_csv), classes=True)
    assert capsys.readouterr().err == ""


# -- encodings and missing labels (#15) -------------------------------------------------------------

def test_data_encoding_reaches_the_reader(sentences, tmp_path):
    frame = sentences(20)
    frame.loc[3, "text"] = "un caf\u00e9 superb"
    path = tmp_path / "latin.csv"
    frame.to_csv(path, index=False, encoding="cp1252")
    assert _error(_cfg(train=str(path))).startswith(f"data.train: {path}: line 5, column 7: byte 0xe9")
    data = prepare_data(_cfg(train=str(path), validation=str(path), test=str(path), encoding="cp1252"),
                        classes=True)
    assert data.splits["test"].texts[3] == "un caf\u00e9 superb"


def test_an_unknown_encoding_is_refused_with_the_recipe():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unknown text encoding 'utf-9'"):
        _cfg(train="x.csv", encoding="utf-9")


@pytest.mark.parametrize(("rows", "named"), [
    ([2], "row 3: missing label"),
    ([2, 5, 6], "rows 3, 6, 7 (3 rows): missing label"),
    ([1, 2, 4, 8, 9, 11, 15], "rows 2, 3, 5, 9, 10, ... (7 rows): missing label"),
])
def test_missing_labels_list_the_first_rows_and_the_count(sentences, write_table, rows, named):
    frame = sentences(20)
    frame.loc[rows, "label"] = None
    path = write_table(frame, "tr.csv")
    message = _error(_cfg(train=str(path), validation=str(path), test=str(path)))
    assert message == f"{path}: {named} in column 'label'; fill or remove them"


def test_a_missing_label_in_the_validation_file_is_called_missing(sentences, write_table):
    val = sentences(6, 1)
    val.loc[[1, 4], "label"] = None
    train, valp = write_table(sentences(20), "tr.csv"), write_table(val, "va.csv")
    message = _error(_cfg(train=str(train), validation=str(valp), test=str(train)))
    assert message == f"{valp}: rows 2, 5 (2 rows): missing label in column 'label'; fill or remove them"
