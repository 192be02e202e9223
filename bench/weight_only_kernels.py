"""PyTorch's weight-only int8/int4 CPU kernels against dense matmuls, with fp32 and bf16 inputs,
on SmolLM2-135M's layer shapes (why `quantize_weights` multiplies in bf16).

    .venv/bin/python bench/weight_only_kernels.py --threads 1

Each cell is the median of 30 calls after 3 warm-ups, for M rows of input (1: one generated
token; 8: a batch of 8 such rows). Random weights: only the shapes matter for speed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tailorkit.compress.quantize_weights import WeightOnlyLinear

SHAPES = [(576, 576, "attention q/o"), (576, 1536, "MLP gate/up"), (1536, 576, "MLP down"),
          (576, 49152, "LM head")]  # (inputs, outputs)


def timed(fn, calls: int = 30) -> float:
    with torch.inference_mode():
        for _ in range(3):
            fn()
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def cells(linear: torch.nn.Linear, rows: int) -> list[float]:
    """ms per call: dense, int8 and int4 with fp32 inputs, then the same with bf16 inputs."""
    w8, w4 = WeightOnlyLinear.from_linear(linear, 8, 64), WeightOnlyLinear.from_linear(linear, 4, 64)
    return [t for dtype in (torch.float32, torch.bfloat16)
            for t in _three(torch.randn(rows, linear.in_features).to(dtype), linear.weight.detach().to(dtype),
                            w8, w8.scales.to(dtype), w4, w4.scales_and_zeros.to(dtype))]


def _three(x, weight, w8, scales, w4, scales_and_zeros) -> list[float]:
    return [timed(lambda: torch.nn.functional.linear(x, weight)),
            timed(lambda: torch._weight_int8pack_mm(x, w8.codes, scales)),
            timed(lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(x, w4.packed, 64, scales_and_zeros))]

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s), torch {torch.__version__}; ms per call")
    print("| layer (in → out) | rows | fp32 dense | int8, fp32 in | int4, fp32 in | bf16 dense | "
          "int8, bf16 in | int4, bf16 in |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for inputs, outputs, what in SHAPES:
        linear = torch.nn.Linear(inputs, outputs, bias=False)
        for rows in (1, 8):
            times = " | ".join(f"{c:.3f}" for c in cells(linear, rows))
            print(f"| {what} ({inputs} → {outputs}) | {rows} | {times} |")

if __name__ == "__main__":
    main()
