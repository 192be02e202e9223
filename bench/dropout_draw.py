"""torch's dropout against train/fast_dropout.py's, forward + backward, on MiniLM-L6's shapes.

    .venv/bin/python bench/dropout_draw.py --repeats 20

Rows: the hidden states' dropout (16 x 128 x 384), the attention probabilities' (16 x 12 x 128 x
128), and a whole attention layer with dropout 0.1: SDPA (which runs its math path on the CPU
when there is dropout, in fp32 under bf16) against `fast_dropout.attention` (transformers' eager
attention with the cheaper draw). The two variants take turns within each repeat; medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from tailorkit.train.fast_dropout import attention, dropout

P = 0.1


def timed(fn, inputs: list[torch.Tensor], grad: torch.Tensor) -> float:
    started = time.perf_counter()
    fn(*inputs).backward(grad)
    for x in inputs:
        x.grad = None
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    def torch_dropout(x):
        return F.dropout(x, P, True)

    def ours_dropout(x):
        return dropout(x, P)

    rows = {
        "hidden dropout 16x128x384": ([(16, 128, 384)], torch_dropout, ours_dropout),
        "attention dropout 16x12x128x128": ([(16, 12, 128, 128)], torch_dropout, ours_dropout),
        "attention layer, 12 heads of 32, 16x128": (
            [(16, 12, 128, 32)] * 3,
            lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=P),
            lambda q, k, v: attention(q, k, v, None, P)),
    }
    print(f"{args.threads} thread(s), median of {args.repeats}, torch {torch.__version__}")
    print("| what | precision | torch ms | tailorkit ms | speed-up |")
    print("| --- | --- | ---: | ---: | ---: |")
    for precision in ("fp32", "bf16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        for name, (shapes, theirs, ours) in rows.items():
            inputs = [torch.randn(s, dtype=dtype, requires_grad=True) for s in shapes]
            grad = torch.randn(shapes[0], dtype=dtype)  # every output has its first input's shape
            times: dict[str, list[float]] = {"torch": [], "tailorkit": []}
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                for repeat in range(args.repeats + 1):
                    for side, fn in (("torch", theirs), ("tailorkit", ours)):
                        seconds = timed(fn, inputs, grad)
                        if repeat:
                            times[side].append(seconds)
            a, b = (statistics.median(times[s]) * 1000 for s in ("torch", "tailorkit"))
            print(f"| {name} | {precision} | {a:.1f} | {b:.1f} | {a / b:.2f}× |")


if __name__ == "__main__":
    main()
