"""data.clean and data.augment inside cross-validated search: each fold run cleans and augments
its own split, so no augmented copy of a validation-fold row trains, duplicates that straddle a
fold's train and validation parts are removed from its training side, and a trial's own clean or
augment values reach every fold."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tailorkit import api
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict


@pytest.fixture
def leaky_csv(sentences, tmp_path) -> Path:
    """100 rows plus 20 exact duplicates of some of them: pooled into folds, duplicates straddle
    train and validation parts."""
    frame = sentences(100, seed=3)
    path = tmp_path / "leaky.csv"
    pd.concat([frame, frame.iloc[:20]], ignore_index=True).to_csv(path, index=False)
    return path


def _study(tiny_recipe, leaky_csv, tmp_path, space: dict) -> dict:
    raw = {**tiny_recipe, "output_dir": str(tmp_path / "study")}
    raw["data"] = {**raw["data"], "train": str(leaky_csv),
                   "clean": {"label_errors": "off"},
                   "augment": {"ops": ["swap", "delete"], "per_example": 1, "seed": 0}}
    raw["train"] = {**raw["train"], "max_steps": 2, "eval_steps": 2}
    raw["search"] = {"metric": "loss", "sampler": "grid", "cv_folds": 3, "space": space}
    return raw


def _words(text: str) -> Counter:
    return Counter(text.split())


def test_folds_augment_and_clean_only_inside_each_fold(tiny_recipe, leaky_csv, tmp_path):
    raw = _study(tiny_recipe, leaky_csv, tmp_path, {"data.augment.per_example": [1, 2]})
    study_dir = api.tune(recipe_from_dict(raw))
    straddling = 0
    trials = pd.read_csv(study_dir / "trials.csv")
    assert sorted(trials["data.augment.per_example"]) == [1, 2]
    for trial, per_example in zip(trials.number, trials["data.augment.per_example"], strict=True):
        for fold in range(3):
            files = study_dir / "folds" / f"fold-{fold}"
            train_raw = pd.read_parquet(files / "train.parquet")
            val_raw = pd.read_parquet(files / "validation.parquet")
            straddling += len(set(train_raw.text) & set(val_raw.text))
            run = study_dir / "trials" / f"{trial:04d}" / f"fold-{fold}"
            saved = yaml.safe_load((run / "recipe.yaml").read_text())
            assert saved["data"]["augment"]["per_example"] == per_example  # the trial's value
            assert saved["data"]["train"] == str(files / "train.parquet")
            trained = pd.read_csv(run / "data" / "train.csv")
            validation = (pd.read_csv(run / "data" / "validation.csv")
                          if (run / "data" / "validation.csv").exists() else val_raw)
            changes = pd.read_csv(run / "data" / "changes.csv")
            added = changes[changes.action == "added"]
            # augmentation touched the fold's training part only, each copy from one of its rows
            assert set(added.split) == {"train"} and len(added) > len(train_raw) // 2
            val_texts = set(val_raw.text)
            for _, change in added.iterrows():
                source = int(re.fullmatch(r"from row (\d+)", change.detail).group(1))
                original = train_raw.text.iloc[source - 1]
                assert original not in val_texts  # never a copy of a validation-fold row
                assert not _words(change.text) - _words(original)  # swap/delete: the source's words
            # a fold trains on its cleaned training rows plus their copies: no validation text
            assert not set(trained.text) & set(validation.text)
            assert len(trained) <= len(train_raw) + per_example * len(train_raw)
            assert set(validation.text) <= val_texts  # validation rows are only ever removed
            leaks = changes[(changes.split == "train") & (changes.reason == "leakage")]
            assert set(leaks.text) <= val_texts | set(pd.read_parquet(files / "test.parquet").text)
    assert straddling > 0, "the fixture's duplicates never straddled a fold: the leakage check saw nothing"


def test_fold_data_that_cannot_vary_per_trial_is_refused(tiny_recipe, leaky_csv, tmp_path):
    raw = _study(tiny_recipe, leaky_csv, tmp_path, {"data.max_train_samples": [40, 60]})
    with pytest.raises(TailorError, match="search.space.data.max_train_samples: with search.cv_folds"):
        recipe_from_dict(raw)
    raw = _study(tiny_recipe, leaky_csv, tmp_path, {"data.clean.dedupe": [True, False]})
    assert recipe_from_dict(raw).search.cv_folds == 3  # clean and augment options may vary
