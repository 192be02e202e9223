"""Causal-LM data: tables -> conversations -> token ids with the prompt masked out of the labels.

Splits follow the same rules as classification (given files, or seeded fractions of the
train file), without stratification. Examples are not packed: each sequence is one
example, padded per batch, so attention never crosses examples and the loss is the mean
over response tokens of the batch.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch

from tailorkit.config.data import DataConfig
from tailorkit.data.instructions import Conversation, detect_format, to_conversations
from tailorkit.data.prepare import SPLITS, carve_missing_splits, read_splits, subset
from tailorkit.data.quality import DataQuality
from tailorkit.data.templates import IGNORE, render_all
from tailorkit.errors import TailorError


class EncodedChat:
    """Token ids and labels per example (-100 = not trained); padded per batch when collated."""

    def __init__(self, input_ids: list[list[int]], labels: list[list[int]], pad_id: int) -> None:
        self.input_ids, self.labels, self.pad_id = input_ids, labels, pad_id
        self.lengths = np.fromiter((len(x) for x in input_ids), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.input_ids)

    def collate(self, indices: list[int]) -> dict[str, torch.Tensor]:
        width = int(self.lengths[indices].max())
        ids = torch.full((len(indices), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(indices), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(indices), width), dtype=torch.long)
        for row, i in enumerate(indices):
            n = int(self.lengths[i])
            ids[row, :n] = torch.tensor(self.input_ids[i])
            labels[row, :n] = torch.tensor(self.labels[i])
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@dataclass
class ChatData:
    splits: dict[str, EncodedChat]
    conversations: dict[str, list[Conversation]]  # kept for sample generations
    format: str
    truncated: dict[str, int]  # examples cut to max_length, per split
    quality: DataQuality | None = None  # what data.clean did, when it ran


def prepare_chat_data(cfg: DataConfig, tokenizer, max_length: int, quality: DataQuality | None = None
                      ) -> ChatData:
    """With `quality` (a run's data stage), `data.clean` cleans the carved splits (data/cleaning/chat.py)
    and `quality` records what it did."""
    raw = carve_missing_splits(read_splits(cfg), cfg, stratify=None)
    train_source, train = raw["train"]
    fmt = detect_format(list(train.columns), cfg.chat) if cfg.format == "auto" else cfg.format
    if quality is not None:
        raw = quality.clean_chat(raw, fmt)
    splits, conversations, truncated = {}, {}, {}
    for name in SPLITS:
        source, frame = raw[name]
        missing = [c for c in cfg.chat.required(fmt) if c not in frame.columns]
        if missing:
            raise TailorError(f"{source}: format {fmt} needs the column(s) {', '.join(missing)} "
                              f"(columns: {', '.join(map(str, frame.columns))}); set data.chat")
        frame = subset(frame, cfg.max_train_samples if name == "train" else cfg.max_eval_samples,
                        cfg.split.seed)
        if quality is not None:
            quality.keep(name, frame)
        chats = to_conversations(frame, fmt, cfg.chat, source)
        rendered = render_all(chats, tokenizer, cfg.template, max_length, source,
                              rows=[int(i) + 1 for i in frame.index])
        dropped = set(rendered.unlabelled)
        keep = [i for i, row in enumerate(frame.index) if int(row) + 1 not in dropped]
        if not keep:
            raise TailorError(f"{source}: no example keeps a response token within "
                              f"model.max_length={max_length}; raise it")
        if rendered.unlabelled:
            print(f"{source}: skipped {len(rendered.unlabelled)} examples whose response lies beyond "
                  f"model.max_length={max_length} (first: row {rendered.unlabelled[0]})", file=sys.stderr)
        splits[name] = EncodedChat([rendered.input_ids[i] for i in keep],
                                   [rendered.labels[i] for i in keep], tokenizer.pad_token_id)
        conversations[name] = [chats[i] for i in keep]
        truncated[name] = len(rendered.truncated)
    if quality is not None:
        quality.write()
    return ChatData(splits, conversations, fmt, truncated, quality)
