"""Which int8 kernels to use for dynamic quantisation on this CPU: measured, side by side.

    .venv/bin/python bench/int8_backends.py runs/quickstart --threads 2

Loads a finished text-classification run and times, on the same test examples, alternating
the variants within each repeat (so a busy moment hits all of them alike):
  fp32              the run's model as trained
  torch.ao int8     torch.ao.quantization.quantize_dynamic, per-channel int8 weights (fbgemm),
                    what `compress: [quantize]` uses
  torchao int8      torchao's Int8DynamicActivationInt8WeightConfig, eager (no torch.compile)
  bf16 autocast     for scale: no quantisation, bf16 matmuls (oneDNN)
Each line gives milliseconds per batch at batch 1 and 32 (medians), the ratio to fp32, and the
test accuracy of the variant. torchao is not a tailorkit dependency; install it for this
script with `pip install torch==2.13.0 torchao==0.18.0`.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tailorkit.compress.quantize import quantize_linears
from tailorkit.data.batching import eval_batches
from tailorkit.evaluate.evaluator import predict_logits
from tailorkit.inference import load_run
from tailorkit.tasks import task_of


def torchao_int8(model):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    return model


@torch.inference_mode()
def time_batches(handle, batches, bf16: bool) -> float:
    started = time.perf_counter()
    for batch in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            handle.forward(batch)
    return 1000 * (time.perf_counter() - started) / len(batches)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--examples", type=int, default=128, help="test examples timed per batch size")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    recipe, handle, labels, _ = load_run(args.run_dir)
    with tempfile.TemporaryDirectory() as scratch:
        test = task_of(recipe).prepare(recipe, Path(scratch), augment=False).splits["test"]
    variants = {"fp32": (handle, False), "bf16 autocast": (handle, True)}
    for name, build in (("torch.ao int8", quantize_linears), ("torchao int8", torchao_int8)):
        h = copy.copy(handle)
        h.model = build(copy.deepcopy(handle.model).eval())
        variants[name] = (h, False)
    n = min(args.examples, len(test))
    times: dict[str, dict[int, list[float]]] = {v: {1: [], 32: []} for v in variants}
    for size in (1, 32):
        batches = [test.collate(b) for b in eval_batches(test.lengths[:n], size)]
        for h, bf16 in variants.values():
            time_batches(h, batches[:2], bf16)  # warm-up
        for _ in range(args.repeats):
            for name, (h, bf16) in variants.items():
                times[name][size].append(time_batches(h, batches, bf16))
    print(f"run {args.run_dir}, {n} test examples per batch size, {args.repeats} repeats, "
          f"{args.threads} threads, torch {torch.__version__}")
    print("| variant | ms / batch (1) | × fp32 | ms / batch (32) | × fp32 | test accuracy |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    base = {s: statistics.median(times["fp32"][s]) for s in (1, 32)}
    for name, (h, bf16) in variants.items():
        logits = predict_logits(h, test, 32, bf16)
        accuracy = float((logits.argmax(-1) == test.targets).mean())
        m = {s: statistics.median(times[name][s]) for s in (1, 32)}
        print(f"| {name} | {m[1]:.1f} | {base[1] / m[1]:.2f}× | {m[32]:.1f} | {base[32] / m[32]:.2f}× "
              f"| {accuracy:.4f} |")


if __name__ == "__main__":
    main()
