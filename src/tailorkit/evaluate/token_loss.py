"""The token loss of language models, shared by training (train/losses.py) and evaluation."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor, shift: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Token cross-entropy summed over the labelled positions, and their count.

    With `shift` (causal LMs) position t predicts token t + 1. Labels of -100 (prompt, padding,
    unmasked tokens) do not count, so the loss covers only the response or masked tokens.
    """
    if logits.size(1) > labels.size(1):  # prompt tuning returns logits for its virtual tokens too
        logits = logits[:, logits.size(1) - labels.size(1):]
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    logits = logits.float()
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                            ignore_index=-100, reduction="sum")
    return total, (labels != -100).sum()
