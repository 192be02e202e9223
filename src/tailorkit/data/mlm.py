"""Masked-LM data for domain adaptation of encoders (BERT, Devlin et al. 2019).

Each batch masks a fraction p of the real tokens (never special tokens or padding):
of those, 80% become [MASK], 10% a random token and 10% stay as they are; the loss
covers only the chosen positions. Training draws fresh masks every batch from the
global torch RNG (checkpointed, so a resumed run masks identically); evaluation
uses one fixed mask per example, so its loss is comparable across evaluations.
"""

from __future__ import annotations

import numpy as np
import torch

from tailorkit.data.templates import IGNORE


def mask_tokens(ids: torch.Tensor, maskable: torch.Tensor, probability: float, mask_id: int,
                vocab_size: int, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels): labels hold the original id where a token was chosen, else -100."""
    chosen = (torch.rand(ids.shape, generator=generator) < probability) & maskable
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    action = torch.rand(ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (action < 0.8)] = mask_id
    swap = chosen & (action >= 0.8) & (action < 0.9)
    inputs[swap] = torch.randint(vocab_size, ids.shape, generator=generator)[swap]
    return inputs, labels


class EncodedMLM:
    def __init__(self, texts: list[str], tokenizer, max_length: int, probability: float,
                 fixed_seed: int | None = None) -> None:
        encoded = tokenizer(texts, truncation=True, max_length=max_length, padding=False,
                            return_special_tokens_mask=True)
        self.input_ids: list[list[int]] = encoded["input_ids"]
        self.special: list[list[int]] = encoded["special_tokens_mask"]
        self.lengths = np.fromiter((len(x) for x in self.input_ids), dtype=np.int64)
        self.pad_id, self.mask_id = tokenizer.pad_token_id or 0, tokenizer.mask_token_id
        self.vocab_size, self.probability = len(tokenizer), probability
        self.fixed_seed = fixed_seed

    def __len__(self) -> int:
        return len(self.input_ids)

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        width = int(self.lengths[indices].max())
        ids = torch.full((len(indices), width), self.pad_id, dtype=torch.long)
        maskable = torch.zeros((len(indices), width), dtype=torch.bool)
        inputs, labels = ids.clone(), torch.full_like(ids, IGNORE)
        for row, i in enumerate(indices):
            n = int(self.lengths[i])
            ids[row, :n] = torch.tensor(self.input_ids[i])
            maskable[row, :n] = torch.tensor(self.special[i]) == 0
        if self.fixed_seed is None:
            inputs, labels = mask_tokens(ids, maskable, self.probability, self.mask_id, self.vocab_size)
        else:  # one mask per example, whatever batch it lands in
            for row, i in enumerate(indices):
                generator = torch.Generator().manual_seed(self.fixed_seed + int(i))
                inputs[row], labels[row] = mask_tokens(ids[row], maskable[row], self.probability,
                                                       self.mask_id, self.vocab_size, generator)
        mask = (torch.arange(width)[None, :] < torch.as_tensor(self.lengths[indices])[:, None]).long()
        return {"input_ids": inputs, "attention_mask": mask, "labels": labels}
