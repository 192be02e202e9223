"""Tokenise once, then batch without paying for padding.

Examples are tokenised without padding. The sampler groups examples of similar
length (shuffled within mega-batches, so the order is still random) and the
collator pads each batch only to its own longest example.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from tailorkit.data.prepare import Split


class EncodedSplit:
    """Token ids per example plus targets; no padding stored."""

    def __init__(self, split: Split, tokenizer, max_length: int) -> None:
        encoded = tokenizer(
            split.texts, split.pairs, truncation=True, max_length=max_length, padding=False
        )
        self.input_ids: list[list[int]] = encoded["input_ids"]
        self.token_type_ids: list[list[int]] | None = encoded.get("token_type_ids")
        self.targets = split.targets
        self.texts, self.pairs = split.texts, split.pairs  # a teacher with its own tokenizer re-reads them
        self.lengths = np.fromiter((len(x) for x in self.input_ids), dtype=np.int64)
        self.pad_id = tokenizer.pad_token_id or 0

    def __len__(self) -> int:
        return len(self.input_ids)

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        width = int(self.lengths[indices].max())
        ids = torch.full((len(indices), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(indices), width), dtype=torch.long)
        types = torch.zeros((len(indices), width), dtype=torch.long) if self.token_type_ids else None
        for row, i in enumerate(indices):
            n = int(self.lengths[i])
            ids[row, :n] = torch.tensor(self.input_ids[i])
            mask[row, :n] = 1
            if types is not None:
                types[row, :n] = torch.tensor(self.token_type_ids[i])
        batch = {"input_ids": ids, "attention_mask": mask,
                 "labels": torch.as_tensor(self.targets[indices])}
        if types is not None:
            batch["token_type_ids"] = types
        return batch


MEGA_BATCHES = 50  # batches per sorted window under `length_grouping: true`, as the Trainer's


def epoch_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, group_by_length: bool | int,
) -> list[list[int]]:
    """The batches of one epoch, a pure function of (seed, epoch) so resume is exact.

    Grouping sorts each window of `mega` batches' worth of shuffled examples by length: a
    smaller window mixes more kinds of example into a batch and pads more.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    mega = MEGA_BATCHES if group_by_length is True else int(group_by_length)
    if group_by_length:
        chunks = [order[i : i + batch_size * mega] for i in range(0, len(order), batch_size * mega)]
        order = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    if group_by_length:
        # Shuffle batch order so long batches do not all come first in each chunk.
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def eval_batches(lengths: np.ndarray, batch_size: int) -> Iterator[list[int]]:
    """Sorted by length for minimal padding; callers put results back by index."""
    order = np.argsort(-lengths, kind="stable")
    for i in range(0, len(order), batch_size):
        yield order[i : i + batch_size].tolist()
