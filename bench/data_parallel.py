"""Data-parallel training on this machine's CPU: the same recipe with `tailor train --nproc 1`
and `--nproc 2` (torchrun, gloo), alternating, and each run's training throughput and wall time
from its summary.json.

samples/s is examples per second of training steps (all processes together: each step takes
batch_size examples, split over the processes), as summary.json reports it; wall s is the whole
command, process start-up (torchrun, imports, model load in every process) included. Threads:
1 process gets the free cores, 2 processes share them (the recipe leaves train.threads out).

    .venv/bin/python bench/data_parallel.py                # MiniLM-L6 full fine-tuning on tweets
    .venv/bin/python bench/data_parallel.py --pairs 2 --max-train 640
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def recipe(args: argparse.Namespace, out: Path) -> dict:
    return {"task": "classification",
            "model": {"name": args.model, "max_length": args.max_length},
            "data": {"name": args.data, "max_train_samples": args.max_train, "max_eval_samples": 64},
            "methods": [args.method],
            "train": {"epochs": 1, "batch_size": args.batch_size, "lr": 5e-5, "progress": False},
            "seed": 42, "output_dir": str(out)}


def run(args: argparse.Namespace, nproc: int, where: Path, n: int) -> dict:
    out = where / f"nproc{nproc}-{n}"
    path = where / f"recipe-{nproc}-{n}.yaml"
    path.write_text(yaml.safe_dump(recipe(args, out)))
    load = os.getloadavg()[0]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tailorkit.cli", "train", str(path), "--nproc", str(nproc)],
                   check=True, capture_output=True)
    wall = time.perf_counter() - started
    s = json.loads((out / "summary.json").read_text())
    return {"nproc": nproc, "samples_per_s": s["samples_per_second"], "train_s": s["train_seconds"],
            "wall_s": round(wall, 1), "threads": s["threads"], "steps": s["steps"],
            "test_accuracy": round(s["test"]["accuracy"], 4), "load_before": round(load, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm-l6")
    p.add_argument("--data", default="tweet-sentiment")
    p.add_argument("--method", default="full")
    p.add_argument("--max-train", type=int, default=320)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--pairs", type=int, default=1, help="alternating (1 process, 2 processes) pairs")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tailor-dp-") as tmp:
        for n in range(args.pairs):
            for nproc in (1, 2):
                rows.append(run(args, nproc, Path(tmp), n))
                print(json.dumps(rows[-1]), flush=True)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')} · {os.cpu_count()} cores · {args.model} {args.method} on "
          f"{args.data} ({args.max_train} train, length {args.max_length}, batch {args.batch_size})")
    print("| processes | threads each | samples/s | train s | wall s | test acc | load before |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['nproc']} | {r['threads']} | {r['samples_per_s']} | {r['train_s']} | {r['wall_s']} | "
              f"{r['test_accuracy']} | {r['load_before']} |")


if __name__ == "__main__":
    main()
