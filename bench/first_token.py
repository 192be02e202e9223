"""What computing the last layer at position 0 only saves (models/first_token.py), on and off.

    .venv/bin/python bench/first_token.py --threads 1 --steps 5

tailorkit's training steps of MiniLM-L6 on 16 BBC News articles at length 128, as
`bench/lora_bound.py` builds them (inside `lean_activations`: cheaper dropout masks, fused LoRA;
IA3 and Houlsby adapters as a recipe applies them),
once with the whole last layer and once with its position 0 only. The two take turns within each
repeat on the same model and batch; the table shows medians. The "prediction" rows time an
inference-mode forward of the same batch, whole against `first_token_only(model, inference=True)`,
which the evaluator enters for validation, test and `tailor predict`.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from contextlib import contextmanager, nullcontext

import torch
from lora_bound import build, prepared, setup, step, title

import tailorkit.train.lean_activations as lean_activations
from tailorkit.models.first_token import first_token_only

VARIANTS = ["tailorkit full", "tailorkit lora, dropout 0.1", "tailorkit lora, dropout 0", "tailorkit ia3",
            "tailorkit houlsby adapters"]
METHODS = {"tailorkit ia3": {"ia3": {}},
           "tailorkit houlsby adapters": {"bottleneck": {"placement": "houlsby"}}}


def build_variant(name: str, base):
    """lora_bound's variants, and tailorkit's IA3 and bottleneck adapters as a recipe applies them."""
    if name not in METHODS:
        return build(name, base)
    from tailorkit.methods.base import apply_methods
    from tailorkit.models.handle import handle_for

    handle = handle_for(copy.deepcopy(base), None, "classes")
    apply_methods(handle, [METHODS[name]])
    return handle.model


@contextmanager
def whole_last_layer(whole: bool):
    """lean_activations without (whole) or with its first-token context."""
    lean_activations.first_token_only = (lambda model: nullcontext()) if whole else first_token_only
    try:
        yield
    finally:
        lean_activations.first_token_only = first_token_only


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=5, help="timed repeats (after one warm-up step)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--length", type=int, default=128)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    base, batch = setup(args)
    models, optimizers = prepared(VARIANTS, base, build_variant)
    print(title(args))
    print("| variant | precision | whole last layer ms | position 0 only ms | speed-up |")
    print("| --- | --- | ---: | ---: | ---: |")
    for bf16 in (False, True):
        times = {(name, whole): [] for name in [*VARIANTS, "prediction"] for whole in (True, False)}
        for repeat in range(args.steps + 1):
            for name in VARIANTS:
                for whole in (True, False):
                    with whole_last_layer(whole):
                        started = time.perf_counter()
                        step(name, models[name], optimizers[name], batch, bf16)
                        if repeat:  # the first is a warm-up
                            times[(name, whole)].append(time.perf_counter() - started)
            for whole in (True, False):
                with first_token_only(base, inference=True) if not whole else nullcontext(), \
                        torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    started = time.perf_counter()
                    base.eval()(**{k: v for k, v in batch.items() if k != "labels"})
                    if repeat:
                        times[("prediction", whole)].append(time.perf_counter() - started)
        for name in [*VARIANTS, "prediction"]:
            whole, first = (statistics.median(times[(name, w)]) * 1000 for w in (True, False))
            precision = "bf16" if bf16 else "fp32"
            print(f"| {name} | {precision} | {whole:.0f} | {first:.0f} | {whole / first:.2f}× |")


if __name__ == "__main__":
    main()
