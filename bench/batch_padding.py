"""How much a recipe's training batches pad under each `train.length_grouping`: the tokens a
batch computes (its size times its longest example) over the tokens its examples hold, summed
over one epoch, for a few seeds. Pure arithmetic on the encoded training split; nothing trains.

    .venv/bin/python bench/batch_padding.py recipes/smollm2-lora-chatterbot.yaml \
        --set data.max_train_samples=800

1.00 would be no padding at all; random batches are `false`.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tailorkit.data.batching import epoch_batches
from tailorkit.recipe import load_recipe
from tailorkit.tasks import task_of

WINDOWS: list[bool | int] = [False, 2, 4, 8, 16, True]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, args.overrides)
    with tempfile.TemporaryDirectory() as scratch:
        lengths = task_of(recipe).prepare(recipe, Path(scratch), augment=False).splits["train"].lengths
    size = recipe.train.batch_size
    print(f"{len(lengths)} training examples, batch {size}, mean length {lengths.mean():.1f} tokens")
    print("| `length_grouping` | computed / real tokens, seeds " + ", ".join(map(str, args.seeds)) + " |")
    print("| --- | --- |")
    for window in WINDOWS:
        ratios = []
        for seed in args.seeds:
            batches = epoch_batches(lengths, size, seed, 0, window)
            ratios.append(sum(len(b) * int(lengths[b].max()) for b in batches) / int(lengths.sum()))
        print(f"| {str(window).lower()} | " + ", ".join(f"{r:.3f}" for r in ratios) + " |")


if __name__ == "__main__":
    main()
