"""data/cleaning: each step on a table where it must change something, and where it must not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tailorkit.config.quality import CleanConfig
from tailorkit.data.cleaning.changes import counts
from tailorkit.data.cleaning.clean import TableColumns, clean_frames
from tailorkit.data.cleaning.conflicts import resolve
from tailorkit.data.cleaning.duplicates import exact_groups, jaccard, near_groups, shingles
from tailorkit.data.cleaning.label_errors import find_label_issues
from tailorkit.data.cleaning.text import dedupe_key, garbled_count, has_mojibake, repair

COLUMNS = TableColumns("text", "label")
OFF = {"label_errors": "off"}  # the steps under test only


def _clean(frames: dict[str, pd.DataFrame], **cfg):
    return clean_frames(frames, CleanConfig(**{**OFF, **cfg}), COLUMNS, numeric=False)


# -- one text ---------------------------------------------------------------------------------------

def test_mojibake_is_repaired():
    broken = "The caf\u00e9 was great, don\u2019t miss it".encode().decode("cp1252")  # UTF-8 read as cp1252
    assert "Ã©" in broken and has_mojibake(broken)
    assert repair(broken, CleanConfig()) == "The café was great, don't miss it"
    assert not has_mojibake("The café was great")


def test_html_control_characters_and_whitespace():
    text = "Fish &amp; chips <b>rock</b>\r\n  really\x07  "
    assert repair(text, CleanConfig()) == "Fish & chips rock really"
    kept = repair(text, CleanConfig(strip_html=False, whitespace=False))
    assert "&amp;" in kept and "<b>" in kept


def test_garbled_characters_are_stripped_not_guessed():
    text = "no thanks _\ufffd_ \U00101401 ok"
    assert garbled_count(text) == 2
    assert repair(text, CleanConfig()) == "no thanks __ ok"
    assert garbled_count(repair(text, CleanConfig(garbled="keep"))) == 2


def test_dedupe_key_ignores_case_accents_escapes_and_spacing_not_punctuation():
    assert dedupe_key("Café  &amp; BAR") == dedupe_key("cafe & bar")
    assert dedupe_key("great :)") != dedupe_key("great :(")


# -- duplicates -------------------------------------------------------------------------------------

NEAR_A = "the flight to boston was delayed by three hours and nobody told us why"
NEAR_B = "the flight to boston was delayed by three hours and nobody told us why!!"


def test_near_duplicate_pair_is_found_at_08_not_at_099():
    similarity = jaccard(shingles(dedupe_key(NEAR_A)), shingles(dedupe_key(NEAR_B)))
    assert 0.8 <= similarity < 0.99
    keys = [dedupe_key(t) for t in (NEAR_A, "an entirely different sentence about trains", NEAR_B)]
    assert near_groups(keys, 0.8) == [[0, 2]]
    assert near_groups(keys, 0.99) == []


def test_exact_groups_keep_file_order():
    assert exact_groups(["a", "b", "a", "c", "a", "b"]) == [[0, 2, 4], [1, 5]]


@pytest.mark.parametrize(("policy", "removed", "relabelled"), [
    ("drop", {0, 1, 2}, {}),
    ("majority", {1, 2}, {0: "neg"}),
    ("keep", {2}, {}),
])
def test_label_conflicts(policy, removed, relabelled):
    decided = resolve([[0, 1, 2]], ["pos", "neg", "neg"], [10, 11, 12], policy, numeric=False,
                      reason="duplicate")
    assert set(decided.removed) == removed
    assert decided.relabelled == relabelled


def test_a_tie_has_no_majority_and_regression_takes_the_median():
    tie = resolve([[0, 1]], ["pos", "neg"], [1, 2], "majority", numeric=False, reason="duplicate")
    assert set(tie.removed) == {0, 1} and tie.removed[0][0] == "label_conflict"
    numbers = resolve([[0, 1, 2]], [1.0, 2.0, 9.0], [1, 2, 3], "majority", numeric=True, reason="duplicate")
    assert numbers.relabelled == {0: 2.0}


# -- a whole table ----------------------------------------------------------------------------------

def _table(texts: list[str], labels: list[str], start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"text": texts, "label": labels}, index=range(start, start + len(texts)))


def test_clean_records_each_removal_with_its_row_and_never_changes_the_input():
    train = _table(["good movie", "Good  movie", "bad movie", "  ", "bad movie", "fine &amp; dandy"],
                   ["pos", "pos", "neg", "pos", "pos", "pos"])
    before = train.copy()
    cleaned = _clean({"train": train}, label_conflicts="drop")
    pd.testing.assert_frame_equal(train, before)
    out = cleaned.frames["train"]
    assert out["text"].tolist() == ["good movie", "fine & dandy"]
    reasons = {(c.row, c.action, c.reason) for c in cleaned.changes}
    assert {(2, "removed", "duplicate"), (4, "removed", "empty"), (3, "removed", "label_conflict"),
            (5, "removed", "label_conflict"), (6, "repaired", "text_repaired")} <= reasons
    assert counts(cleaned.changes)["train"]["removed"] == {"empty": 1, "duplicate": 1, "label_conflict": 2}


def test_rows_without_a_label_are_removed_first():
    train = _table(["good movie", "bad movie", "good movie"], ["pos", None, None])
    cleaned = _clean({"train": train})
    assert cleaned.frames["train"]["text"].tolist() == ["good movie"]
    assert sorted((c.row, c.reason) for c in cleaned.changes) == [(2, "missing_label"), (3, "missing_label")]


def test_length_filters():
    train = _table(["one", "two words", "three words here", "a much longer row of seven words"], ["a"] * 4)
    cleaned = _clean({"train": train}, min_words=2, max_words=5)
    assert cleaned.frames["train"]["text"].tolist() == ["two words", "three words here"]
    assert sorted(c.reason for c in cleaned.changes) == ["too_long", "too_short"]


def test_leakage_is_removed_from_train_and_validation_never_from_test():
    train = _table(["seen in test", "only in train", "in validation", NEAR_A], ["a", "b", "a", "b"])
    validation = _table(["In validation", "seen  in TEST"], ["a", "a"], start=10)
    test = _table(["seen in test", NEAR_B], ["a", "b"], start=20)
    cleaned = _clean({"train": train, "validation": validation, "test": test}, near_duplicates=0.8)
    assert cleaned.frames["train"]["text"].tolist() == ["only in train"]
    assert cleaned.frames["validation"]["text"].tolist() == ["In validation"]
    pd.testing.assert_frame_equal(cleaned.frames["test"], test)
    leaks = {(c.split, c.row, c.detail) for c in cleaned.changes if c.reason == "leakage"}
    assert ("train", 1, "same text as test row 21") in leaks  # validation's copy went first
    assert ("train", 3, "same text as validation row 11") in leaks
    assert any(split == "train" and row == 4 and "near duplicate" in detail and "test row 22" in detail
               for split, row, detail in leaks)
    assert ("validation", 12, "same text as test row 21") in leaks


def test_the_test_split_is_cleaned_only_when_named():
    test = _table(["x  y", "x y"], ["a", "a"])
    assert len(_clean({"test": test}).frames["test"]) == 2
    assert len(_clean({"test": test}, splits=["test"]).frames["test"]) == 1


def _separable(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        cues = ["wonderful", "excellent", "great"] if label == "pos" else ["awful", "terrible", "bad"]
        cue = rng.choice(cues)
        filler = " ".join(rng.choice(["the", "film", "was", "plot", "really", "acting"], size=3))
        rows.append({"text": f"{filler} {cue} {cue}", "label": label})
    return pd.DataFrame(rows)


def test_cleanlab_flags_a_flipped_label():
    frame = _separable()
    frame.loc[7, "label"] = "neg"  # row 8 says "wonderful" twice, labelled neg
    issues, note = find_label_issues(frame["text"].tolist(), frame["label"].tolist(), folds=5, seed=0)
    assert note is None
    assert [i.position for i in issues] == [7]
    assert (issues[0].given, issues[0].predicted) == ("neg", "pos")
    cleaned = clean_frames({"train": frame}, CleanConfig(dedupe=False, label_errors="remove"), COLUMNS, False)
    assert 7 not in cleaned.frames["train"].index
    flagged = clean_frames({"train": frame}, CleanConfig(dedupe=False), COLUMNS, False)
    assert len(flagged.frames["train"]) == len(frame)
    assert [(c.row, c.action) for c in flagged.changes if c.reason == "label_error"] == [(8, "flagged")]


def test_label_errors_are_skipped_with_a_reason():
    _, note = find_label_issues(["a b", "c d", "e f"], ["x", "x", "y"], folds=5, seed=0)
    assert "at least 2 rows" in note
    regression = clean_frames({"train": _table(["a", "b"], [1.0, 2.0])}, CleanConfig(), COLUMNS, numeric=True)
    assert regression.notes == ["label errors not searched: regression targets have no classes"]
