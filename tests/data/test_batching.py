"""Batch order as a pure function of (seed, epoch); padding only to each batch's longest example."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tailorkit.data.batching import EncodedSplit, epoch_batches, eval_batches
from tailorkit.data.prepare import Split


@pytest.fixture
def lengths() -> np.ndarray:
    return np.random.default_rng(7).integers(3, 60, size=537)


def _padding(batches: list[list[int]], lengths: np.ndarray) -> int:
    return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)


@pytest.mark.parametrize("grouped", [True, False])
def test_same_seed_and_epoch_give_the_same_batches(lengths, grouped):
    a = epoch_batches(lengths, 8, seed=3, epoch=2, group_by_length=grouped)
    b = epoch_batches(lengths.copy(), 8, seed=3, epoch=2, group_by_length=grouped)
    assert a == b
    assert a != epoch_batches(lengths, 8, seed=3, epoch=3, group_by_length=grouped)
    assert a != epoch_batches(lengths, 8, seed=4, epoch=2, group_by_length=grouped)


def test_batches_do_not_depend_on_global_rng_state(lengths):
    np.random.seed(0)
    torch.manual_seed(0)
    a = epoch_batches(lengths, 8, seed=1, epoch=0, group_by_length=True)
    np.random.seed(123)
    np.random.rand(10)
    torch.manual_seed(99)
    assert epoch_batches(lengths, 8, seed=1, epoch=0, group_by_length=True) == a


@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("batch_size", [1, 8, 50, 1000])
def test_every_index_exactly_once(lengths, grouped, batch_size):
    batches = epoch_batches(lengths, batch_size, seed=0, epoch=0, group_by_length=grouped)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))
    sizes = [len(b) for b in batches]
    assert max(sizes) <= batch_size
    assert sum(s < batch_size for s in sizes) <= (len(lengths) // (batch_size * 50) + 1)


def test_length_grouping_reduces_padding(lengths):
    grouped = epoch_batches(lengths, 16, seed=0, epoch=0, group_by_length=True)
    plain = epoch_batches(lengths, 16, seed=0, epoch=0, group_by_length=False)
    assert _padding(grouped, lengths) < 0.5 * _padding(plain, lengths)


def test_a_smaller_window_pads_more_and_mixes_more(lengths):
    """`length_grouping: N` sorts windows of N batches: true is 50, and 1 sorts nothing."""
    assert epoch_batches(lengths, 8, seed=0, epoch=0, group_by_length=True) == \
        epoch_batches(lengths, 8, seed=0, epoch=0, group_by_length=50)
    padding = [_padding(epoch_batches(lengths, 8, seed=0, epoch=0, group_by_length=w), lengths)
               for w in (50, 8, 2)]
    assert padding == sorted(padding) and padding[0] < padding[-1]
    no_window = epoch_batches(lengths, 8, seed=0, epoch=0, group_by_length=1)
    assert sorted(map(sorted, no_window)) == sorted(map(sorted, epoch_batches(
        lengths, 8, seed=0, epoch=0, group_by_length=False)))


def test_length_grouping_must_be_a_switch_or_a_positive_window():
    from pydantic import ValidationError

    from tailorkit.config.train import TrainConfig

    assert TrainConfig(length_grouping=8).length_grouping == 8
    assert TrainConfig(length_grouping=True).length_grouping is True
    with pytest.raises(ValidationError, match="batches per sorted window"):
        TrainConfig(length_grouping=0)


def test_grouped_batch_order_is_still_shuffled(lengths):
    batches = epoch_batches(lengths, 8, seed=0, epoch=0, group_by_length=True)
    widths = [int(lengths[b].max()) for b in batches]
    assert widths != sorted(widths, reverse=True) and widths != sorted(widths)


def test_eval_batches_cover_everything_longest_first(lengths):
    batches = list(eval_batches(lengths, 32))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    widths = [int(lengths[b].max()) for b in batches]
    assert widths == sorted(widths, reverse=True)


# -- collation ---------------------------------------------------------------------------------------

@pytest.fixture
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _split(texts, pairs=None, targets=None) -> Split:
    targets = np.arange(len(texts)) % 2 if targets is None else targets
    return Split("test", list(texts), pairs, np.asarray(targets))


def test_collate_pads_to_the_batch_max(tokenizer):
    texts = ["good", "the movie was very good", "bad film", "it was a really nasty awful day"]
    data = EncodedSplit(_split(texts), tokenizer, max_length=32)
    assert data.lengths.tolist() == [3, 7, 4, 9]  # [CLS] words [SEP]
    batch = data.collate([0, 2])
    assert batch["input_ids"].shape == (2, 4)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert batch["input_ids"][0, 3].item() == tokenizer.pad_token_id
    assert batch["labels"].tolist() == [0, 0]
    full = data.collate([3, 0, 1])
    assert full["input_ids"].shape == (3, 9)
    assert full["attention_mask"].sum(1).tolist() == [9, 3, 7]
    for row, i in enumerate([3, 0, 1]):
        assert full["input_ids"][row, : data.lengths[i]].tolist() == data.input_ids[i]


def test_collate_matches_the_tokenizers_own_padding(tokenizer):
    texts = ["good", "the movie was very good", "bad film"]
    data = EncodedSplit(_split(texts), tokenizer, max_length=32)
    ours = data.collate([0, 1, 2])
    theirs = tokenizer(texts, padding=True, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(ours[key], theirs[key]), key


def test_pairs_get_segment_ids(tokenizer):
    data = EncodedSplit(_split(["good film", "bad"], pairs=["nice", "the plot was sad"]), tokenizer, 32)
    batch = data.collate([0, 1])
    # [CLS] good film [SEP] nice [SEP] -> segments 0 0 0 0 1 1, then padding 0
    assert batch["token_type_ids"][0].tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    # [CLS] bad [SEP] the plot was sad [SEP]
    assert batch["token_type_ids"][1].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]


def test_truncation_to_max_length(tokenizer):
    long = " ".join(["good"] * 100)
    data = EncodedSplit(_split([long, "bad"]), tokenizer, max_length=16)
    assert data.lengths.tolist() == [16, 3]
    assert data.collate([0, 1])["input_ids"].shape == (2, 16)


def test_regression_targets_stay_float(tokenizer):
    data = EncodedSplit(_split(["good", "bad"], targets=np.array([0.25, 0.75], dtype=np.float32)),
                        tokenizer, 32)
    labels = data.collate([1, 0])["labels"]
    assert labels.dtype == torch.float32 and labels.tolist() == [0.75, 0.25]


@pytest.mark.parametrize("task, expected", [("classification", True), ("causal_lm", False), ("mlm", True)])
def test_length_grouping_left_out_takes_the_tasks_default(task, expected):
    """Causal LMs batch at random by default (grouping cost SFT loss, docs/causal-lm.md); the
    resolved value goes into the run's recipe.yaml, so a resumed run keeps its batches."""
    import yaml

    from tailorkit.recipe import dump_recipe, recipe_from_dict

    raw = {"task": task, "model": {"name": "some-model"}, "data": {"train": "train.csv"}}
    recipe = recipe_from_dict(raw)
    assert recipe.train.length_grouping is expected
    assert yaml.safe_load(dump_recipe(recipe))["train"]["length_grouping"] is expected
    chosen = recipe_from_dict({**raw, "train": {"length_grouping": 8}})
    assert chosen.train.length_grouping == 8
