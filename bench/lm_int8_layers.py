"""Which linear layers of a causal LM survive dynamic int8: test loss with sets of them kept fp32.

    .venv/bin/python bench/lm_int8_layers.py runs/smollm2-full-400 --examples 64

Loads a finished causal-LM run, scores the first `--examples` test conversations in fp32, then
with every linear layer dynamic int8 except those whose name has a part in each `--keep` set.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch

from tailorkit.compress.quantize import quantize_linears
from tailorkit.evaluate.evaluator import language_model_metrics
from tailorkit.inference import load_run
from tailorkit.tasks import task_of


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--examples", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--keep", action="append", default=None,
                   help="comma-separated name parts kept fp32 (repeatable); default: lm_head, then "
                        "lm_head,down_proj")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    recipe, handle, _, _ = load_run(args.run_dir)
    quiet = recipe.model_copy(update={
        "generation": recipe.generation.model_copy(update={"samples": 0}),
        "data": recipe.data.model_copy(update={"max_eval_samples": args.examples})})
    with tempfile.TemporaryDirectory() as scratch:
        test = task_of(recipe).prepare(quiet, Path(scratch), augment=False).splits["test"]
    print(f"{len(test)} test conversations of {args.run_dir}")
    print(f"fp32: loss {language_model_metrics(handle, test, 8)['loss']:.4f}")
    for keep in args.keep or ["", "lm_head", "lm_head,down_proj"]:
        parts = [k for k in keep.split(",") if k]
        int8 = copy.copy(handle)
        int8.model = quantize_linears(copy.deepcopy(handle.model), parts)
        print(f"int8, fp32 kept {parts or 'none'}: loss {language_model_metrics(int8, test, 8)['loss']:.4f}")


if __name__ == "__main__":
    main()
