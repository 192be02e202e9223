"""Inference time of a run in torch against its ONNX export in onnxruntime, taking turns
within each repeat, on the first N test examples at two batch sizes (one thread each).

    .venv/bin/tailor export runs/quickstart --format onnx --out /tmp/exp/quickstart-onnx
    .venv/bin/python bench/export_speed.py runs/quickstart /tmp/exp/quickstart-onnx --examples 64
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from tailorkit import api
from tailorkit.export.onnx import MODEL_FILE
from tailorkit.export.parity import torch_runner
from tailorkit.export.samples import test_samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("onnx_dir")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(f"{args.onnx_dir}/{MODEL_FILE}", options,
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    recipe, handle, labels, _ = api.load_run(args.run_dir)
    samples = test_samples(recipe, handle, labels, args.examples)
    sides = {"torch": torch_runner(handle),
             "onnxruntime": lambda b: session.run(["logits"], {n: b[n].numpy() for n in names})[0]}
    for batch in (1, 16):
        batches = []
        for start in range(0, len(samples), batch):
            collated = samples.data.collate(list(range(start, min(start + batch, len(samples)))))
            batches.append({k: v for k, v in collated.items() if k != "labels"})
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.repeats):
            for name, run in sides.items():
                started = time.perf_counter()
                for b in batches:
                    run(b)
                times[name].append((time.perf_counter() - started) / len(batches) * 1000)
        best = {name: round(float(np.min(t)), 1) for name, t in times.items()}
        print(json.dumps({"batch": batch, "examples": len(samples), "ms_per_batch_best_of_repeats": best,
                          "onnx_speedup": round(best["torch"] / best["onnxruntime"], 2)}), flush=True)


if __name__ == "__main__":
    main()
