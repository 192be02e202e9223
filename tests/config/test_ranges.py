"""Numbers outside their real range are refused when the recipe is read, before any loading."""

from __future__ import annotations

import math

import pytest

from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict

BASE = {"model": {"name": "minilm-l6"}, "data": {"name": "bbc-news"}}


@pytest.mark.parametrize(("train", "message"), [
    ({"epochs": math.inf}, r"train.epochs: Input should be a finite number"),
    ({"lr": math.nan}, r"train.lr: Input should be a finite number"),
    ({"betas": [1.5, 0.999]}, r"train.betas\[0\]: Input should be less than 1"),
    ({"betas": [0.9, -0.1]}, r"train.betas\[1\]: Input should be greater than or equal to 0"),
])
def test_out_of_range_numbers_are_refused(train, message):
    with pytest.raises(TailorError, match=message):
        recipe_from_dict({**BASE, "train": train})
