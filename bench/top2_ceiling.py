"""How much frozen-prefix caching can save for `freeze: {top: 2}` on MiniLM-L6: the cost of the
four frozen blocks' forward (L) against the two trained blocks' forward + backward (T), per
16 x 128 BBC batch, on one thread.

    .venv/bin/python bench/top2_ceiling.py

E epochs cost E (L + T) without the cache and L + E T with it (the first epoch fills it), so the
speed-up of the training steps is E (L + T) / (L + E T): below E for any T > 0, and 3 epochs can
never reach 3x.
"""

import tempfile
import time
from pathlib import Path

import torch

from tailorkit.pipeline import setup_run
from tailorkit.recipe import load_recipe
from tailorkit.train.frozen_prefix import FrozenPrefix

EPOCHS, BATCH, BATCHES = 3, 16, 4


def main() -> None:
    torch.set_num_threads(1)
    run = Path(tempfile.mkdtemp())
    recipe = load_recipe("recipes/bbc-top2.yaml", [f"data.max_train_samples={BATCH * BATCHES}"])
    setup = setup_run(recipe, run)
    prefix = FrozenPrefix(setup.handle, 4096, run)
    train = setup.splits["train"]
    setup.handle.model.train()
    prefix.deterministic()
    lower = top = 0.0
    for repeat in range(2):  # the first pass warms up
        for i in range(BATCHES):
            batch = train.collate(list(range(i * BATCH, (i + 1) * BATCH)))
            started = time.perf_counter()
            states = prefix.states(batch)
            middle = time.perf_counter()
            prefix.top(batch, states * batch["attention_mask"][..., None]).sum().backward()
            if repeat:
                lower, top = lower + middle - started, top + time.perf_counter() - middle
    lower, top = lower / BATCHES, top / BATCHES
    print(f"batch {tuple(batch['input_ids'].shape)}: frozen blocks 1-4 forward L = {lower * 1000:.0f} ms, "
          f"blocks 5-6 + head forward+backward T = {top * 1000:.0f} ms")
    print(f"{EPOCHS} epochs of training steps: {EPOCHS} (L + T) / (L + {EPOCHS} T) = "
          f"{EPOCHS * (lower + top) / (lower + EPOCHS * top):.2f}x with the cache")


if __name__ == "__main__":
    main()
