"""Generation speed of finished causal-LM runs, side by side: greedy tokens per second.

    .venv/bin/python bench/generate_speed.py runs/smollm2-full-400 \
        runs/smollm2-full-400-int8/1-quantize --threads 2

Each run answers the same prompts (the first validation prompts of the first run's data)
greedily with a fixed number of new tokens; the runs take turns within each repeat, so a busy
moment of the machine slows them alike and the ratio holds. Test loss comes from each run's
summary.json. Memory is measured apart: each run loads and answers the prompts once in a fresh
process (`--peak-rss`), since one process would hold every model. It reports the resident memory
after answering (what the model costs while it serves) and the peak (which includes building the
float architecture while loading).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from tailorkit.compress.measure import weights_mb
from tailorkit.data.chat import prepare_chat_data
from tailorkit.generate import generate
from tailorkit.inference import load_generator
from tailorkit.pipeline.run_dir import MODEL


def rss_mb() -> tuple[float, float]:
    """This process's resident memory now and its peak since it started. Not ru_maxrss: Linux
    carries that over from the parent through fork and exec, so a child would report its
    parent's peak."""
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompts", type=int, default=4)
    p.add_argument("--tokens", type=int, default=32, help="new tokens per answer")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peak-rss", action="store_true", help="answer once with the first run, print the "
                                                            "process's resident and peak RSS in MB, and stop")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loaded = [load_generator(run) for run in args.runs]
    recipe, first = loaded[0]
    data = prepare_chat_data(recipe.data, first.tokenizer, recipe.model.max_length)
    prompts = [chat[:-1] for chat in data.conversations["validation"][: args.prompts]]
    if args.peak_rss:
        for messages in prompts:
            generate(first, messages, args.tokens, 1.0, 1.0, True, 0)
        print(*rss_mb())
        return
    peaks = [_peak_rss(run, args) for run in args.runs]
    seconds: list[list[float]] = [[] for _ in loaded]
    produced = [0 for _ in loaded]
    for _ in range(args.repeats):
        for n, (_, handle) in enumerate(loaded):
            started = time.perf_counter()
            for messages in prompts:
                answer = generate(handle, messages, args.tokens, 1.0, 1.0, True, 0)
                produced[n] += len(handle.tokenizer(answer, add_special_tokens=False)["input_ids"])
            seconds[n].append(time.perf_counter() - started)
    print(f"{len(prompts)} prompts x {args.tokens} new tokens (greedy), {args.repeats} repeats, "
          f"{args.threads} threads, torch {torch.__version__}")
    print("| run | test loss | weights MB | RSS after answering MB | peak RSS MB | tokens / s | × first |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rates = [produced[n] / args.repeats / statistics.median(seconds[n]) for n in range(len(loaded))]
    for run, rate, (now, peak) in zip(args.runs, rates, peaks, strict=True):
        loss = json.loads((Path(run) / "summary.json").read_text())["test"]["loss"]
        size = weights_mb(Path(run) / MODEL)
        print(f"| `{run}` | {loss:.4f} | {size} | {now:.0f} | {peak:.0f} | {rate:.1f} | "
              f"{rate / rates[0]:.2f}× |")


def _peak_rss(run: str, args) -> tuple[float, float]:
    out = subprocess.run([sys.executable, __file__, run, "--peak-rss", "--threads", str(args.threads),
                          "--prompts", str(args.prompts), "--tokens", str(args.tokens)],
                         capture_output=True, text=True, check=True).stdout
    now, peak = out.strip().splitlines()[-1].split()
    return float(now), float(peak)


if __name__ == "__main__":
    main()
