"""Resident memory after each training step of bench/lm_memory.py's tailorkit side: which batch
sets the peak, and what the allocator keeps between steps.

    LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 \\
        python bench/lm_step_memory.py --steps 20 --threads 1 [--chunk 256]

(`tailor train` restarts itself under tcmalloc; this script runs in-process, so preload it to
see what a run sees.) One line per step: the longest example of the batch, its tokens, the
resident memory and the high-water mark after the step, and the step's seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lm_memory  # noqa: E402  (bench/ is not a package)


def status_mb(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
    return int(line.split()[1]) // 1024


def main() -> None:
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--chunk", type=int, help="train.lm_head_chunk (default: the recipe's)")
    mine, rest = own.parse_known_args()
    chunk, args = mine.chunk, lm_memory.parse_args(rest)  # lm_memory's flags: --steps, --threads, ...
    from tailorkit import api
    from tailorkit.train.loop import Trainer

    step = Trainer._step

    def timed_step(self, group, trainable):
        started = time.perf_counter()
        loss = step(self, group, trainable)
        lengths = [int(self.train_data.lengths[i]) for batch in group for i in batch]
        print(f"longest {max(lengths):4d}  tokens {sum(lengths):5d}  resident {status_mb('VmRSS')} MB  "
              f"peak {status_mb('VmHWM')} MB  {time.perf_counter() - started:.2f} s", flush=True)
        return loss

    Trainer._step = timed_step
    with tempfile.TemporaryDirectory(prefix="lm-step-memory-") as work:
        recipe = lm_memory.make_recipe(args, "tailorkit", Path(work) / "run")
        if chunk is not None:
            train = recipe.train.model_copy(update={"lm_head_chunk": chunk})
            recipe = recipe.model_copy(update={"train": train})
        api.train(recipe)
    print(f"peak of the run {status_mb('VmHWM')} MB")


if __name__ == "__main__":
    main()
