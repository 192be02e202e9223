"""The C allocator's share of a causal-LM LoRA step's memory and time: the same training steps
under glibc's malloc as it comes, glibc told to return every block of 128 KiB or more when it is
freed (MALLOC_MMAP_THRESHOLD_), and tcmalloc (what `tailor` restarts under: launch.py).

    .venv/bin/python bench/allocator_steps.py --steps 9 --repeats 2

Each allocator runs in a process of its own, the allocators alternating, each on the same
steps: SmolLM2-135M, LoRA r=8 on every linear layer (tailorkit's fused LoRA, the chunked head
loss and lean gated MLPs), batch 8, widths 64/128/96/48 in turn, fp32, one thread. It prints the
seconds of all steps but the first and the process's peak RSS (VmHWM). Noisy machines: compare
the columns of one run, not runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

WIDTHS = (64, 128, 96, 48)
TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
MODES = {"glibc": {}, "glibc, 128 KiB mmap threshold": {"MALLOC_MMAP_THRESHOLD_": "131072"},
         "tcmalloc": {"LD_PRELOAD": TCMALLOC}}


def steps(n: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from tailorkit.evaluate.lm_head_loss import ChunkedLMLoss
    from tailorkit.models.handle import load_causal_lm
    from tailorkit.sources import resolve_model
    from tailorkit.train.fused_lora import use_fused_lora
    from tailorkit.train.gated_mlp import lean_gated_mlps

    torch.set_num_threads(1)
    handle = load_causal_lm(resolve_model("smollm2-135m"))
    model = get_peft_model(handle.model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                    target_modules="all-linear"))
    use_fused_lora(model)
    loss_fn = ChunkedLMLoss(model.get_output_embeddings(), 256)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    g = torch.Generator().manual_seed(0)
    times = []
    with lean_gated_mlps(model):
        for i in range(n):
            ids = torch.randint(0, 49000, (8, WIDTHS[i % len(WIDTHS)]), generator=g)
            start = time.perf_counter()
            loss_fn(loss_fn.hidden_states(handle, {"input_ids": ids}), ids).backward()
            opt.step()
            opt.zero_grad()
            times.append(time.perf_counter() - start)
    status = Path("/proc/self/status").read_text().splitlines()
    peak = next(int(x.split()[1]) // 1024 for x in status if x.startswith("VmHWM"))
    return {"seconds": sum(times[1:]), "peak_mb": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=9)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(steps(args.steps)))
        return
    rows: dict[str, list[dict]] = {mode: [] for mode in MODES}
    for _ in range(args.repeats):
        for mode, env in MODES.items():
            if "LD_PRELOAD" in env and not os.path.exists(env["LD_PRELOAD"]):
                continue
            out = subprocess.run([sys.executable, __file__, "--child", "--steps", str(args.steps)],
                                 env={**os.environ, **env, "PYTHONWARNINGS": "ignore"}, capture_output=True,
                                 text=True, check=True)
            rows[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"| allocator | seconds of steps 2-{args.steps} (each repeat) | peak RSS MB (each repeat) |")
    print("| --- | --- | --- |")
    for mode, runs in rows.items():
        if runs:
            seconds = " / ".join(f"{r['seconds']:.1f}" for r in runs)
            peaks = " / ".join(str(r["peak_mb"]) for r in runs)
            print(f"| {mode} | {seconds} | {peaks} |")


if __name__ == "__main__":
    main()
