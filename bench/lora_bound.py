"""LoRA against its bound: one training step of full fine-tuning, of the bound, of PEFT's LoRA and
of tailorkit's, side by side on the same batches.

    .venv/bin/python bench/lora_bound.py --threads 1 --steps 5

The bound is a step in which every block is frozen but gradients still flow through all of them
(the word embeddings and the head train): what any method that trains something at the bottom
must pay. LoRA trains less than that, so a good LoRA step costs about as much. Every variant is
MiniLM-L6 with a 5-class head over 16 BBC News articles at length 128; a step is forward,
loss, backward and a fused AdamW step. The variants take turns within each repeat, so a busy
moment of the machine slows them alike; the table shows medians. Peak RSS comes from a fresh
process per variant (`--only NAME`), since one process's peak would hold every model.

The "tailorkit" variants run as tailorkit's loop trains: inside `lean_activations`, so their
dropout masks come from train/fast_dropout.py's cheaper draw (the model's hidden and attention
dropout, 0.1, as well as LoRA's), and LoRA layers take the fused path. "tailorkit full" and
"tailorkit bound" show what the cheaper draw alone gives full fine-tuning and the bound.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

VARIANTS = ["full", "bound", "peft lora, dropout 0.1", "peft lora, dropout 0", "tailorkit full",
            "tailorkit bound", "tailorkit lora, dropout 0.1", "tailorkit lora, dropout 0"]


def build(name: str, base):
    from peft import LoraConfig, TaskType, get_peft_model

    from tailorkit.train.fused_lora import use_fused_lora

    model = copy.deepcopy(base)
    kind = name.removeprefix("tailorkit ")
    if kind == "full":
        return model
    if kind == "bound":
        for n, p in model.named_parameters():
            p.requires_grad_(n.startswith(("bert.embeddings.word_embeddings", "classifier")))
        return model
    dropout = 0.1 if "0.1" in name else 0.0
    config = LoraConfig(task_type=TaskType.SEQ_CLS, target_modules="all-linear", r=8, lora_alpha=16,
                        lora_dropout=dropout, modules_to_save=["classifier"])
    model = get_peft_model(model, config)
    if name.startswith("tailorkit"):
        use_fused_lora(model)
    return model


def batch_of_articles(tokenizer, size: int, length: int) -> dict:
    from tailorkit.sources import load_catalogue_dataset

    frame = load_catalogue_dataset("bbc-news").head(size)
    batch = tokenizer(list(frame["text"]), truncation=True, max_length=length, padding="max_length",
                      return_tensors="pt")
    labels = sorted(set(frame["label"]))
    batch["labels"] = torch.tensor([labels.index(v) for v in frame["label"]]) % 5
    return dict(batch)


def step(name: str, model, optimizer, batch: dict, bf16: bool) -> None:
    from tailorkit.train.lean_activations import lean_activations

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    lean = lean_activations(model) if name.startswith("tailorkit") else nullcontext()
    with lean, torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(**inputs).logits
    F.cross_entropy(logits.float(), batch["labels"]).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def setup(args):
    from tailorkit.models.handle import load_text_classifier
    from tailorkit.sources import resolve_model

    torch.manual_seed(0)
    handle = load_text_classifier(resolve_model("minilm-l6"), "classes", [str(i) for i in range(5)])
    return handle.model.train(), batch_of_articles(handle.tokenizer, args.batch_size, args.length)


def optimizer_for(model):
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=True)


def prepared(names: list[str], base, builder=build) -> tuple[dict, dict]:
    """Each variant's model and optimiser, built from one base."""
    models = {name: builder(name, base) for name in names}
    return models, {name: optimizer_for(m) for name, m in models.items()}


def title(args) -> str:
    return (f"MiniLM-L6, batch {args.batch_size} x {args.length} BBC News tokens, {args.threads} thread(s), "
            f"median of {args.steps} steps, torch {torch.__version__}")


def peak_rss(name: str, args) -> float:
    out = subprocess.run([sys.executable, __file__, "--only", name, "--threads", str(args.threads),
                          "--batch-size", str(args.batch_size), "--length", str(args.length)]
                         + (["--bf16"] if args.bf16_only else []),
                         capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """This process's peak RSS since it started. Not ru_maxrss: Linux carries that over from the
    parent through fork and exec, so a child would report its parent's peak."""
    with open("/proc/self/status") as status:
        line = next(x for x in status if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=5, help="timed repeats (after one warm-up step)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--only", help="one variant, 3 steps; print its peak RSS in MB")
    p.add_argument("--bf16", dest="bf16_only", action="store_true", help="with --only: under bf16 autocast")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    base, batch = setup(args)
    if args.only:
        model = build(args.only, base)
        del base
        optimizer = optimizer_for(model)
        for _ in range(3):
            step(args.only, model, optimizer, batch, args.bf16_only)
        print(peak_rss_mb())
        return
    models, optimizers = prepared(VARIANTS, base)
    print(title(args))
    print("| variant | precision | ms / step | speed × full | time ÷ bound | peak RSS MB |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for bf16 in (False, True):
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for repeat in range(args.steps + 1):
            for name in VARIANTS:
                started = time.perf_counter()
                step(name, models[name], optimizers[name], batch, bf16)
                if repeat:  # the first step warms kernels and allocators up
                    times[name].append(time.perf_counter() - started)
        medians = {name: statistics.median(t) * 1000 for name, t in times.items()}
        args.bf16_only = bf16
        for name in VARIANTS:
            ms = medians[name]
            print(f"| {name} | {'bf16' if bf16 else 'fp32'} | {ms:.0f} | {medians['full'] / ms:.2f}× | "
                  f"{ms / medians['bound']:.2f} | {peak_rss(name, args):.0f} |")


if __name__ == "__main__":
    main()
