"""data/augment: EDA edits, their counts per class, determinism, and the training split only."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from tailorkit.config import DataConfig
from tailorkit.config.quality import AugmentConfig
from tailorkit.data.augment.augment import augment_frame, new_rows_per_row
from tailorkit.data.augment.eda import random_deletion, random_insertion, random_swap, synonym_replacement
from tailorkit.data.augment.synonyms import EmbeddingNeighbours, WordNetSynonyms, wordnet_installed
from tailorkit.data.prepare import prepare_data
from tailorkit.data.quality import DataQuality

SYNONYMS = {"movie": ["film", "picture"], "great": ["superb"], "plot": ["story"]}.get
STOPS = frozenset({"the", "was"})
WORDS = ["the", "movie", "was", "great", "and", "the", "plot", "was", "thin"]


def _lookup(word: str) -> list[str]:
    return SYNONYMS(word) or []


def test_each_edit_changes_what_it_says():
    rng = random.Random(0)
    replaced = synonym_replacement(WORDS, 2, rng, _lookup, STOPS)
    assert len(replaced) == len(WORDS) and sum(a != b for a, b in zip(replaced, WORDS, strict=True)) == 2
    inserted = random_insertion(WORDS, 1, rng, _lookup, STOPS)
    assert len(inserted) == len(WORDS) + 1
    assert set(inserted) - set(WORDS) <= {"film", "picture", "superb", "story"}
    swapped = random_swap(WORDS, 1, rng)
    assert sorted(swapped) == sorted(WORDS) and swapped != WORDS
    deleted = random_deletion(WORDS, 0.1, rng)
    assert 1 <= len(deleted) < len(WORDS) and all(w in WORDS for w in deleted)
    assert random_deletion(["alone"], 0.9, rng) == ["alone"]


def _frame() -> pd.DataFrame:
    texts = ["the movie was great fun", "the plot was thin and dull", "a great movie with a great plot",
             "dull and slow movie", "great cast great plot", "the worst film this year"]
    return pd.DataFrame({"text": texts, "label": ["pos", "neg", "pos", "neg", "pos", "neg"]})


def test_same_seed_same_rows_other_seed_other_rows():
    cfg = AugmentConfig(per_example=3, seed=5)
    a, changes = augment_frame(_frame(), cfg, "text", "label", True, _lookup)
    b, _ = augment_frame(_frame(), cfg, "text", "label", True, _lookup)
    c, _ = augment_frame(_frame(), cfg.model_copy(update={"seed": 6}), "text", "label", True, _lookup)
    pd.testing.assert_frame_equal(a, b)
    assert a["text"].tolist() != c["text"].tolist()
    assert len(a) == 6 * 4 and len(changes) == 18
    assert a.iloc[:6].equals(_frame())  # originals first, unchanged
    assert {c.action for c in changes} == {"added"} and {c.reason for c in changes} <= {
        "eda:synonym", "eda:insert", "eda:swap", "eda:delete"}
    # each new row keeps the label of the row it came from
    for change, (_, row) in zip(changes, a.iloc[6:].iterrows(), strict=True):
        assert row["label"] == _frame()["label"][change.row - 1]


def test_balance_and_cap():
    labels = ["a"] * 6 + ["b"] * 2
    balanced = new_rows_per_row(labels, AugmentConfig(per_example=0, balance=True), random.Random(0))
    assert sum(balanced[:6]) == 0 and sum(balanced[6:]) == 4
    counts = new_rows_per_row(labels, AugmentConfig(per_example=1, max_per_class=8), random.Random(0))
    assert sum(counts[:6]) == 2 and sum(counts[6:]) == 2  # a: capped at 8; b: doubled to 4
    frame = pd.DataFrame({"text": [f"word{i} plot movie great" for i in range(8)], "label": labels})
    out, _ = augment_frame(frame, AugmentConfig(per_example=0, balance=True), "text", "label", True, _lookup)
    assert out["label"].value_counts().to_dict() == {"a": 6, "b": 6}


def test_rows_without_a_label_are_kept_and_make_no_new_rows():
    frame = pd.DataFrame({"text": [f"word{i} plot movie great" for i in range(5)],
                          "label": ["a", "a", "b", None, None]})
    out, changes = augment_frame(frame, AugmentConfig(per_example=0, balance=True), "text", "label", True,
                                 _lookup)
    assert out["label"].value_counts().to_dict() == {"a": 2, "b": 2} and out["label"].isna().sum() == 2
    assert [c.row for c in changes] == [3]  # the one new row balances b, from row 3


def test_a_short_text_makes_no_row_twice():
    """Two words have one swap: the first new row takes it, and no other swap is new (before,
    all four new rows were "movie Good")."""
    frame = pd.DataFrame({"text": ["Good movie"], "label": ["pos"]})
    out, changes = augment_frame(frame, AugmentConfig(per_example=4, ops=["swap"]), "text", "label", True,
                                 None)
    assert out["text"].tolist() == ["Good movie", "movie Good"] and len(changes) == 1


def test_embedding_neighbours_are_the_nearest_whole_words():
    vocab = {"[PAD]": 0, "good": 1, "great": 2, "##ing": 3, "awful": 4, "fine": 5}
    vectors = np.array([[0, 0], [1, 0.1], [1, 0.12], [1, 0.11], [-1, 0], [0.9, 0.3]], dtype=np.float32)
    neighbours = EmbeddingNeighbours(vocab, vectors, k=2)
    assert neighbours("good") == ["great", "fine"]  # ##ing is a word piece, not a word
    assert neighbours("unknown") == []


@pytest.mark.skipif(not wordnet_installed("/usr/share/wordnet"),
                    reason="WordNet database not installed (apt-get install wordnet-base)")
def test_wordnet_synonyms_from_the_debian_database():
    synonyms = WordNetSynonyms("/usr/share/wordnet")
    assert "automobile" in synonyms("car")
    assert "car" not in synonyms("car")


def test_the_data_stage_augments_the_training_split_only(sentiment_csv, tmp_path):
    cfg = DataConfig.model_validate({"train": str(sentiment_csv), "max_train_samples": 20,
                                     "augment": {"per_example": 2, "ops": ["swap", "delete"], "seed": 3}})
    plain = prepare_data(cfg.model_copy(update={"augment": None}), classes=True)
    runs = [prepare_data(cfg, classes=True, quality=DataQuality(cfg, tmp_path / f"d{i}")) for i in range(2)]
    for name in ("validation", "test"):
        assert runs[0].splits[name].texts == plain.splits[name].texts
    assert len(runs[0].splits["train"]) == 3 * len(plain.splits["train"])
    assert runs[0].splits["train"].texts[:20] == plain.splits["train"].texts
    assert runs[0].splits["train"].texts == runs[1].splits["train"].texts
    written = pd.read_csv(tmp_path / "d0" / "train.csv")
    assert written["text"].tolist() == runs[0].splits["train"].texts
    changes = pd.read_csv(tmp_path / "d0" / "changes.csv")
    assert len(changes) == 40 and set(changes["action"]) == {"added"}
    assert not (tmp_path / "d0" / "test.csv").exists()
