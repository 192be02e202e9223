"""What one training forward of bench/lm_memory.py's tailorkit side keeps for the backward, by
tensor shape: SmolLM2-135M with LoRA, a batch of the longest training example and seven others
(so it is padded), counted with saved-tensor hooks as the memory estimate counts.

    .venv/bin/python bench/kept_activations.py [--transformers-attention]

`--transformers-attention` keeps transformers' own SDPA attention (repeated key/value heads, a
mask per layer) instead of train/lean_attention.py's.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lm_memory  # noqa: E402  (bench/ is not a package)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transformers-attention", action="store_true")
    args = parser.parse_args()
    from tailorkit.pipeline.assemble import setup_run
    from tailorkit.train import lean_activations as lean

    if args.transformers_attention:
        lean.lean_attention = lambda model: contextlib.nullcontext(0)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as work:
        recipe = lm_memory.make_recipe(lm_memory.parse_args([]), "tailorkit", Path(work) / "run")
        setup = setup_run(recipe, Path(work))
    model, data = setup.handle.model, setup.splits["train"]
    order = np.argsort(-data.lengths, kind="stable")
    batch = data.collate([int(order[0])] + [int(i) for i in order[len(order) // 2:][:7]])
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept: dict[int, tuple[int, tuple[int, ...]]] = {}

    def observe(t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            kept.setdefault(storage.data_ptr(), (storage.nbytes(), tuple(t.shape)))

    model.train()
    with lean.lean_activations(model, observe=observe):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    by_shape: collections.Counter = collections.Counter()
    for nbytes, shape in kept.values():
        by_shape[shape] += nbytes
    rows = batch["attention_mask"].sum(1).tolist()
    print(f"batch {tuple(batch['input_ids'].shape)}, tokens per row {rows}")
    print(f"kept {sum(by_shape.values()) / 2**20:.1f} MB")
    for shape, nbytes in by_shape.most_common():
        print(f"{nbytes / 2**20:8.1f} MB  {shape}")


if __name__ == "__main__":
    main()
