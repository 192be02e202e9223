"""Reading user tables: CSV, TSV, JSONL, Parquet and saved `datasets` folders."""

from __future__ import annotations

import pandas as pd
import pytest

from tailorkit.data.tables import read_table, write_csv
from tailorkit.errors import TailorError

FRAME = pd.DataFrame({"text": ["a good film", "a bad film", "so, \"quoted\" text"],
                      "label": ["pos", "neg", "pos"], "score": [0.9, 0.1, 0.7]})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_files_read_back_the_same_table(write_table, suffix):
    path = write_table(FRAME, f"data{suffix}")
    pd.testing.assert_frame_equal(read_table(path, "data.train"), FRAME)


def test_uppercase_suffix_is_accepted(write_table, tmp_path):
    path = write_table(FRAME, "data.csv").rename(tmp_path / "DATA.CSV")
    assert list(read_table(path, "data.train")["label"]) == ["pos", "neg", "pos"]


def test_saved_dataset_folder(write_table):
    pd.testing.assert_frame_equal(read_table(write_table(FRAME, "ds"), "data.train"), FRAME)


def test_saved_dataset_dict_folder_gives_a_frame_per_split(tmp_path):
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_pandas(FRAME),
                               "test": datasets.Dataset.from_pandas(FRAME.iloc[:1])})
    dd.save_to_disk(str(tmp_path / "dd"))
    table = read_table(tmp_path / "dd", "data.train")
    assert set(table) == {"train", "test"}
    assert len(table["train"]) == 3 and len(table["test"]) == 1


def test_missing_file_names_the_field_and_path(tmp_path):
    with pytest.raises(TailorError) as info:
        read_table(tmp_path / "nope.csv", "data.validation")
    assert str(info.value) == f"data.validation: file not found: {tmp_path / 'nope.csv'}"


def test_unknown_file_type_lists_the_known_ones(tmp_path):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(TailorError) as info:
        read_table(path, "data.train")
    assert "unknown file type '.xlsx'" in str(info.value)
    assert ".csv" in str(info.value) and ".parquet" in str(info.value)


def test_folder_that_is_not_a_saved_dataset(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hi")
    with pytest.raises(TailorError, match=r"data\.train: .*plain is a folder but not a saved datasets"):
        read_table(tmp_path / "plain", "data.train")


@pytest.mark.parametrize(("name", "content", "why"), [
    ("broken.jsonl", '{"text": "a", "label": 1}\n{"text": \n', "cannot read as "),
    ("broken.parquet", "not parquet at all", "cannot read as "),
    ("empty.csv", "", "the file is empty"),
    ("empty.parquet", "", "the file is empty"),
])
def test_unreadable_file_is_one_line_naming_the_file(tmp_path, name, content, why):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TailorError) as info:
        read_table(path, "data.train")
    message = str(info.value)
    assert message.startswith(f"data.train: {path}: {why}")
    assert "\n" not in message


# -- a .json file holding one array of objects (#21 item 6) ----------------------------------------

@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
@pytest.mark.parametrize("indent", [None, 2])
def test_a_json_array_of_objects_is_a_table(tmp_path, suffix, indent):
    path = tmp_path / f"data{suffix}"
    FRAME.to_json(path, orient="records", indent=indent)
    assert path.read_text().lstrip().startswith("[")
    pd.testing.assert_frame_equal(read_table(path, "data.train"), FRAME)


def test_one_json_lines_row_is_still_a_table(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text('{"text": "a good film", "label": "pos"}\n')
    assert read_table(path, "data.train").to_dict("records") == [{"text": "a good film", "label": "pos"}]


@pytest.mark.parametrize(("content", "holds"), [
    ('["a good film", "a bad film"]', "holds a JSON array whose item 1 is a string, not an object"),
    ('[{"text": "a"}, [1, 2]]', "holds a JSON array whose item 2 is an array, not an object"),
    ('{\n  "text": ["a", "b"],\n  "label": ["pos", "neg"]\n}', "holds one JSON object over several lines "
                                                              "(keys: text, label)"),
    ("42", "holds a single JSON value (a number)"),
])
def test_other_json_shapes_say_what_they_hold_and_what_is_read(tmp_path, content, holds):
    path = tmp_path / "data.json"
    path.write_text(content)
    with pytest.raises(TailorError) as info:
        read_table(path, "data.train")
    assert str(info.value) == (f"data.train: {path}: {holds}; a JSON table is one object per line "
                               "(JSON Lines) or one array of objects")


# -- text encodings (#15) ---------------------------------------------------------------------------

CP1252 = "text,label\na good film,pos\nun caf\u00e9 cr\u00e8me,neg\n".encode("cp1252")


@pytest.mark.parametrize(("name", "content", "where"), [
    ("data.csv", CP1252, "line 3, column 7: byte 0xe9"),
    ("data.tsv", CP1252.replace(b",", b"\t"), "line 3, column 7: byte 0xe9"),
    ("data.jsonl", '{"text": "ok", "label": "pos"}\n{"text": "caf\u00e9", "label": "neg"}\n'.encode("cp1252"),
     "line 2, column 14: byte 0xe9"),
    # far past the reader's first buffer: the line still counts from the start of the file
    ("big.csv", b"text,label\n" + b"a good film,pos\n" * 40_000 + b"caf\xe9,neg\n", "line 40002, column 4"),
])
def test_a_byte_that_is_not_utf8_names_the_line_and_the_fix(tmp_path, name, content, where):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TailorError) as info:
        read_table(path, "data.train")
    assert str(info.value).startswith(f"data.train: {path}: {where}")
    assert str(info.value).endswith("is not valid utf-8; set data.encoding to the file's encoding "
                                    "(detected: cp1252) or save it as UTF-8")  # data/encoding.py
    with pytest.raises(TailorError, match=r"--input: .*is not valid utf-8; save it as UTF-8$"):
        read_table(path, "--input")  # a command-line file: no recipe to name the encoding in


def test_the_recipe_names_the_encoding(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(CP1252)
    texts = read_table(path, "data.train", "cp1252")["text"].tolist()
    assert texts == ["a good film", "un caf\u00e9 cr\u00e8me"]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_json_file_with_a_byte_order_mark_reads(tmp_path, suffix):
    path = tmp_path / f"bom{suffix}"
    rows = '{"text": "a", "label": 1}\n{"text": "b", "label": 2}\n'
    path.write_bytes("\ufeff".encode() + (rows if suffix == ".jsonl" else
                                           '[{"text": "a", "label": 1}, {"text": "b", "label": 2}]').encode())
    assert read_table(path, "data.train").to_dict("list") == {"text": ["a", "b"], "label": [1, 2]}


@pytest.mark.parametrize("texts", [["line\rbreak", "two\nlines", "comma, quote \"", "plain", None],
                                   ["plain", "comma, here", None, "x", "y"]])
def test_written_csv_reads_back_row_for_row(tmp_path, texts):
    """A lone carriage return (old Mac line ends, some tweets) ended the row when read back."""
    frame = pd.DataFrame({"text": texts, "label": [1, 2, 3, 4, 5], "p": [0.5, 0.25, 1.0, 0.0, None]})
    write_csv(frame, tmp_path / "out.csv")
    back = read_table(tmp_path / "out.csv", "--input")
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
