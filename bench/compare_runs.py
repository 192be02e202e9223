"""Finished runs of one base model side by side: latency, size and test metrics.

    .venv/bin/python bench/compare_runs.py runs/quickstart runs/bbc-distill-3blocks \
        runs/bbc-distill-3blocks-int8/1-quantize --threads 2

Times every run on the same test examples (the first run's test split), the runs taking turns
within each repeat (compress.measure.latency_ms), so a busy moment of the machine slows them
alike and the ratios hold. The runs must read their inputs alike (text: one tokenizer; images:
one image size), as runs of one base model, compressed or distilled, do. Accuracy and F1 come
from each run's summary.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from tailorkit.compress.measure import latency_ms, parameter_counts, weights_mb
from tailorkit.inference import load_run
from tailorkit.pipeline.run_dir import MODEL
from tailorkit.tasks import task_of


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--examples", type=int, default=128, help="test examples timed per batch size")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loaded = [load_run(run) for run in args.runs]
    recipe = loaded[0][0]
    with tempfile.TemporaryDirectory() as scratch:
        test = task_of(recipe).prepare(recipe, Path(scratch), augment=False).splits["test"]
    vocab = {len(handle.tokenizer) if handle.tokenizer else None for _, handle, _, _ in loaded}
    if len(vocab) != 1:
        raise SystemExit("the runs read their inputs differently; compare runs of one base model")
    handles = [handle for _, handle, _, _ in loaded]
    times = latency_ms(handles, test, [1, 32], args.examples, args.repeats)
    print(f"{min(args.examples, len(test))} test examples per batch size, {args.repeats} repeats, "
          f"{args.threads} threads, torch {torch.__version__}")
    print("| run | test accuracy | test macro-F1 | weights MB | parameters | ms / batch (1) | × first "
          "| ms / batch (32) | × first |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for run, handle, t in zip(args.runs, handles, times, strict=True):
        s = json.loads((Path(run) / "summary.json").read_text())["test"]
        print(f"| `{run}` | {s['accuracy']:.4f} | {s['f1_macro']:.4f} | {weights_mb(Path(run) / MODEL)} "
              f"| {parameter_counts(handle)['total']:,} | {t['1']:.1f} | {times[0]['1'] / t['1']:.2f}× "
              f"| {t['32']:.1f} | {times[0]['32'] / t['32']:.2f}× |")


if __name__ == "__main__":
    main()
