"""Would one shared LoRA A-projection for query/key/value pay on CPU? (issue #16)

Sibling layers that read the same input could compute x A_q^T, x A_k^T, x A_v^T as one matmul
against the concatenated A (N x 3r) instead of three (N x r). This times forward + backward of
three MiniLM-L6-sized LoRA linears (384 -> 384, r 8, 16 x 128 tokens, one thread), both ways,
interleaved, medians: the LoRA branch alone, and the whole linears (frozen base + branch), which
is what a training step pays.

    .venv/bin/python bench/lora_shared_a.py --repeats 40
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=40)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n, d, r, scale = 16 * 128, 384, args.rank, 2.0
    x0 = torch.randn(n, d)
    w = [torch.randn(d, d) * 0.02 for _ in range(3)]  # frozen: no weight gradient
    a = [torch.randn(r, d, requires_grad=True) for _ in range(3)]
    b = [torch.randn(d, r, requires_grad=True) for _ in range(3)]
    grads = [torch.randn(n, d) for _ in range(3)]

    def step(shared: bool, with_base: bool) -> float:
        start = time.perf_counter()
        x = x0.clone().requires_grad_()
        hs = (x @ torch.cat(a).t()).split(r, dim=1) if shared else [x @ ai.t() for ai in a]
        outs = [h @ bi.t() * scale + (x @ wi.t() if with_base else 0)
                for h, bi, wi in zip(hs, b, w, strict=True)]
        torch.autograd.backward(outs, grads)
        return (time.perf_counter() - start) * 1e3

    for with_base in (False, True):
        times = {False: [], True: []}
        for _ in range(2):  # warm-up
            step(False, with_base), step(True, with_base)
        for _ in range(args.repeats):
            for shared in (False, True):
                times[shared].append(step(shared, with_base))
        sep, sh = statistics.median(times[False]), statistics.median(times[True])
        what = "q/k/v linears (base + LoRA)" if with_base else "LoRA branch alone"
        print(f"{what}: three A {sep:.1f} ms, one shared A {sh:.1f} ms, speed-up {sep / sh:.3f}x")


if __name__ == "__main__":
    main()
