"""data.clean and data.augment as the run's data stage: the recipe fields, the files a run
leaves, and the tasks that refuse them."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import make_sentences, recipe_dict
from tailorkit.api import train
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict


def test_a_run_cleans_augments_and_records(tiny_model_dir, tmp_path):
    frame = make_sentences(120)
    frame.loc[5, "text"] = "caf\u00e9 food was good".encode().decode("cp1252")  # mojibake
    frame = pd.concat([frame, frame.iloc[:10]], ignore_index=True)  # 10 exact duplicates
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    before = path.read_bytes()
    raw = recipe_dict(tiny_model_dir, path, tmp_path / "run", epochs=1)
    raw["data"] |= {"clean": {"label_errors": "off", "splits": ["train"]},
                    "augment": {"per_example": 1, "ops": ["swap"], "seed": 1}}
    run = train(recipe_from_dict(raw))
    assert path.read_bytes() == before
    summary = json.loads((run / "summary.json").read_text())
    counts = summary["data_quality"]["counts"]["train"]
    removed = counts["removed"]["duplicate"] + counts["removed"].get("leakage", 0)
    assert removed >= 1 and counts["repaired"]["text_repaired"] >= 1
    written = pd.read_csv(run / "data" / "train.csv")
    assert summary["data"]["train"] == len(written) == 2 * counts["added"]["eda:swap"]  # one copy each
    assert not written["text"].str.contains("\u00c3").any()  # no mojibake left in what it trained on
    changes = pd.read_csv(run / "data" / "changes.csv")
    assert {"repaired", "removed", "added"} <= set(changes["action"])
    assert not (run / "data" / "test.csv").exists()  # the test split was not touched


def test_tasks_that_do_not_augment_refuse_the_section(tiny_model_dir, sentiment_csv, tmp_path):
    raw = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "run")
    raw |= {"task": "causal_lm"}
    raw["data"] |= {"augment": {}}
    with pytest.raises(TailorError, match=r"data.augment: task causal_lm does not run it .*classification"):
        recipe_from_dict(raw)


def test_a_typo_in_the_sections_is_named(tiny_model_dir, sentiment_csv, tmp_path):
    raw = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "run")
    raw["data"] |= {"clean": {"near_duplicate": 0.8}}
    with pytest.raises(TailorError, match=r"data.clean.near_duplicate: unknown field; did you mean"):
        recipe_from_dict(raw)


def test_a_split_that_cleaning_left_unusable_says_so(tiny_model_dir, tmp_path):
    """Every negative row is long: max_words 4 leaves one class, and the error says who did it."""
    rows = [(f"good great fine {i}", "pos") if i % 2 else (f"bad awful poor thing with many words {i}", "neg")
            for i in range(60)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "t.csv", index=False)
    raw = recipe_dict(tiny_model_dir, tmp_path / "t.csv", tmp_path / "run")
    raw["data"]["clean"] = {"max_words": 4}
    with pytest.raises(TailorError, match=r"has one class \('pos'\); .*; data.clean removed \d+ of its rows "
                                          r"\(loosen its filters"):
        train(recipe_from_dict(raw))
    raw["data"]["clean"] = {"max_words": 4, "min_words": 9}
    with pytest.raises(TailorError, match=r"the train split has no rows; data.clean removed \d+ of its rows"):
        train(recipe_from_dict({**raw, "output_dir": str(tmp_path / "run2")}))
