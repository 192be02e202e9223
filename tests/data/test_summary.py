"""The console's data summary: rows, classes and lengths, as the split holds them."""

from __future__ import annotations

import numpy as np

from tailorkit.data.summary import data_summary


class Split(list):
    def __init__(self, targets, lengths=None):
        super().__init__(targets)
        self.targets, self.lengths = np.asarray(targets), lengths
        if lengths is not None:
            self.input_ids = [[0] * n for n in lengths]  # a text split


class Images(list):
    """An image split: every 'length' is 1, and there are no tokens."""

    def __init__(self, targets):
        super().__init__(targets)
        self.targets, self.lengths = np.asarray(targets), np.ones(len(targets), dtype=int)


def test_rows_classes_and_lengths():
    splits = {"train": Split([0, 1, 1, 1], np.array([5, 10, 20, 32])), "validation": Split([0]),
              "test": Split([1, 0])}
    lines = data_summary(splits, ["neg", "pos"], max_length=32)
    assert lines[0] == "data: train 4  validation 1  test 2"
    assert lines[1] == "classes (train): neg 1, pos 3"
    assert lines[2] == ("tokens per example (train): median 15, 95th percentile 30, max 32; "
                        "25.0% reach max_length 32 (cut there)")


def test_regression_targets_have_no_class_line():
    lines = data_summary({"train": Split([0.5, 2.0])}, [], max_length=16)
    assert len(lines) == 1


def test_image_splits_have_no_token_line():
    lines = data_summary({"train": Images([0, 1, 1])}, ["a", "b"], max_length=128)
    assert lines == ["data: train 3", "classes (train): a 1, b 2"]
