"""The run's test split, or its first `limit` rows, encoded exactly as the run encodes inputs:
the same examples go through the run and through the exported artefact."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from tailorkit.config.recipe import Recipe
from tailorkit.data.batching import EncodedSplit
from tailorkit.data.chat import EncodedChat, prepare_chat_data
from tailorkit.data.image_data import EncodedImages, prepare_image_data
from tailorkit.data.image_transforms import ImageTransform
from tailorkit.data.prepare import Split, prepare_data
from tailorkit.models.handle import ModelHandle


@dataclass
class Samples:
    data: EncodedSplit | EncodedImages | EncodedChat  # .collate(indices): the model's input tensors
    targets: np.ndarray | None  # None for language models (their labels are in the batches)
    total: int  # rows in the whole test split

    def __len__(self) -> int:
        return len(self.data)


def test_samples(recipe: Recipe, handle: ModelHandle, labels: list[str], limit: int | None) -> Samples:
    if handle.modality == "image":
        images, _, _ = prepare_image_data(recipe.data)
        test = images["test"]
        total = len(test)
        if limit is not None and limit < total:
            test = replace(test, images=test.images[:limit], labels=test.labels[:limit],
                           ids=None if test.ids is None else test.ids[:limit])
        return Samples(EncodedImages(test, ImageTransform(recipe.data.image, train=False)),
                       np.asarray(test.labels), total)
    if handle.output == "next_token":
        chat = prepare_chat_data(recipe.data, handle.tokenizer, recipe.model.max_length).splits["test"]
        n = len(chat) if limit is None else min(limit, len(chat))
        return Samples(EncodedChat(chat.input_ids[:n], chat.labels[:n], chat.pad_id), None, len(chat))
    split = prepare_data(recipe.data, classes=handle.output == "classes",
                         labels=labels or None).splits["test"]
    total = len(split.texts)
    n = total if limit is None else min(limit, total)
    split = Split(split.source, split.texts[:n], None if split.pairs is None else split.pairs[:n],
                  np.asarray(split.targets[:n]))
    return Samples(EncodedSplit(split, handle.tokenizer, recipe.model.max_length),
                   np.asarray(split.targets), total)
