"""`tailor data inspect`'s report: each finding counted on a table made to have it."""

from __future__ import annotations

import json

import pandas as pd

from tailorkit.data.cleaning.clean import TableColumns
from tailorkit.data.inspection import inspect_table
from tailorkit.data.inspection_render import html_report, text_report

COLUMNS = TableColumns("text", "label")
MOJIBAKE = "don\u2019t stop".encode().decode("cp1252")


def _table() -> pd.DataFrame:
    texts = ["good film", "Good  film", "bad film", MOJIBAKE, None, "lost _\ufffd_ bytes", "fish &amp; chips",
             "line\rbreak", "the flight was delayed three hours and nobody told us why",
             "the flight was delayed three hours and nobody told us why!!", "good film"]
    labels = ["pos", "pos", "neg", "pos", "neg", "neg", "pos", "neg", "neg", "neg", "neg"]
    return pd.DataFrame({"text": texts, "label": labels})


def test_every_finding_is_counted(tiny_model_dir):
    from transformers import AutoTokenizer

    test = pd.DataFrame({"text": ["bad film", "brand new text", "fish & chips"],
                         "label": ["neg", "pos", "pos"]})
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    r = inspect_table(_table(), "t.csv", COLUMNS, test, "test.csv", tokenizer, "tiny", max_length=4,
                      threshold=0.8)
    assert r["rows"] == 11
    assert r["labels"]["counts"] == {"neg": 7, "pos": 4}
    assert r["empty"]["rows"] == [5] and r["empty"]["examples"][0]["text"] == ""  # a missing cell, not "nan"
    assert r["mojibake"]["rows"] == [4] and r["mojibake"]["examples"][0]["fixed"] == "don't stop"
    assert r["garbled"]["rows"] == [6]
    assert r["html"]["rows"] == [7]
    assert r["control_characters"]["rows"] == [8]
    assert r["duplicates"] == {"groups": 1, "extra_rows": 2, "examples": [
        {"rows": [1, 2, 11], "texts": ["good film", "Good  film", "good film"],
         "labels": ["pos", "pos", "neg"]}]}
    assert r["near_duplicates"]["groups"] == 1 and r["near_duplicates"]["examples"][0]["rows"] == [9, 10]
    assert r["label_conflicts"]["groups"] == 1 and r["label_conflicts"]["rows"] == 3
    assert r["test"]["exact"] == 2 and r["test"]["examples"][0]["test_row"] == 1
    assert r["lengths"]["unit"] == "tokens" and r["lengths"]["max_length"] == 4
    assert r["lengths"]["truncated"] >= 2  # the two long flight rows at least
    json.dumps(r)  # the --json output


def test_text_and_html_say_the_same_counts():
    r = inspect_table(_table(), "t.csv", COLUMNS, threshold=0.8)
    text = text_report(r)
    assert "exact duplicates (normalised text): 1 groups, 2 (18.2%) extra rows" in text
    assert "same text, different labels: 1 groups (3 rows)" in text
    assert "length in words" in text
    page = html_report(r)
    assert page.startswith("<!doctype html>") and "fish &amp;amp; chips" in page  # escaped as written
    assert "<script" not in page


def test_missing_and_whole_number_labels_read_as_training_reads_them():
    frame = pd.DataFrame({"text": ["a b", "c d", "a b", "e f", "g h", "i j"],
                          "label": [1.0, 5.0, None, 5.0, 1.0, None]})
    r = inspect_table(frame, "t.csv", COLUMNS, threshold=None)
    assert r["labels"]["counts"] == {"1": 2, "5": 2} and r["labels"]["missing"] == 2
    assert r["label_conflicts"]["groups"] == 0  # "a b" once labelled, once not: no conflict
    assert "missing label: 2 rows" in text_report(r)


def test_labels_that_differ_only_in_case_or_spaces_are_named():
    frame = pd.DataFrame({"text": ["a", "b", "c", "d", "e"],
                          "label": ["positive", "positive ", "Positive", "negative", "negative"]})
    report = inspect_table(frame, "t.csv", TableColumns("text", "label"))
    assert report["labels"]["lookalikes"] == [["Positive", "positive", "positive "]]
    assert ("labels that differ only in case or spaces: 'Positive', 'positive', 'positive ' (each is a class "
            "of its own in training; make them one)") in text_report(report)
    report = inspect_table(frame.assign(label=["pos", "pos", "neg", "neg", "Neutral"]), "t.csv",
                           TableColumns("text", "label"))
    assert report["labels"]["lookalikes"] == [] and "differ only" not in text_report(report)
