"""tailorkit against the standard stack (transformers Trainer, + PEFT for LoRA), side by side.

    .venv/bin/python bench/compare.py --method lora --data tweet-sentiment --model minilm-l6 \\
        --epochs 1 --max-train 2000

Both sides train the same model on the same splits (tailorkit's own `prepare_data`, so the very
same examples) with the same hyperparameters, seed and torch thread count. Each side runs in its
own subprocess, so its peak RSS is its own, in alternating order (tailorkit, Trainer, tailorkit,
...) so slow drift in the machine's load hits both. The result goes to bench/RESULTS.md with the
date, the machine and the exact command; `--smoke` runs a few steps on tiny data, writes to a
temporary file and makes no timing claims (CI runs it).

What is measured, the same way on both sides:
- samples/s: training examples over the summed step time, a step being fetch + collate +
  forward + backward + clipping + optimiser + scheduler (tailorkit's own `samples_per_second`;
  for the Trainer a timer from `get_batch_samples` to `on_step_end`). Validation passes and
  checkpoint writes are outside it. For `features` the step loop runs over cached features, so
  the row reports an effective rate instead: epochs x train examples over (feature extraction of
  every split + head training).
- end-to-end: wall time of the side's whole subprocess (start-up, imports, data, model, training
  with a validation pass per epoch, test predictions, saving the final model), seen by the parent.
- peak RSS: `ru_maxrss` of the side's own process.
- test accuracy on the same test split.

The Trainer side is what a competent user writes: AutoModelForSequenceClassification, the
tokenizer with truncation, DataCollatorWithPadding, the Trainer's default optimiser (fused AdamW),
weight decay, clipping and linear schedule set as tailorkit's, `eval_strategy="epoch"`.
`save_strategy="no"`: tailorkit writes resumable checkpoints (every 50 steps and each epoch) and
the Trainer writes none, so checkpoint I/O can only count against tailorkit; both save the final
model once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "RESULTS.md"

# method -> (tailorkit recipe methods, learning rate). The rates are those of recipes/bbc-*.yaml;
# the features head uses its own default head_lr, and the Trainer's head-only run the same rate.
METHODS = {
    "lora": ([{"lora": {"r": 8, "alpha": 16}}], 1e-3),
    "full": ([{"full": {}}], 1e-4),
    "top2": ([{"freeze": {"top": 2}}], 2e-4),
    "features": ([{"features": {"head": "linear"}}], 1e-3),
}
TRAINER_NAME = {"lora": "Trainer+PEFT", "full": "Trainer", "top2": "Trainer (same params frozen)",
                "features": "Trainer head-only"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", required=True, choices=sorted(METHODS))
    p.add_argument("--data", required=True, help="catalogue dataset, e.g. bbc-news, tweet-sentiment")
    p.add_argument("--model", default="minilm-l6")
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--max-train", type=int, default=None, help="seeded subset of the train split")
    p.add_argument("--max-eval", type=int, default=500, help="seeded subset of validation and test")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=None, help="default: the method's recipe rate")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast on both sides")
    p.add_argument("--threads", type=int, default=None, help="torch threads on both sides; "
                   "default: tailorkit's choice from the cores free at the start, then fixed")
    p.add_argument("--repeats", type=int, default=1, help="pairs of runs, alternating the sides")
    p.add_argument("--trainer-group-by-length", action="store_true",
                   help="Trainer: train_sampling_strategy='group_by_length' (its default is random)")
    p.add_argument("--malloc-mmap-threshold", type=int, default=None, metavar="BYTES",
                   help="set glibc's MALLOC_MMAP_THRESHOLD_ on both sides: allocations above it "
                   "are mapped and unmapped one by one (less heap fragmentation, more page faults)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--lora-dropout", type=float, default=None,
                   help="lora: dropout on both sides; default tailorkit's (0). Rows before 2026-11-30 "
                        "ran with 0.1, the default then")
    p.add_argument("--smoke", action="store_true", help="a few steps on tiny data; no timing claims; "
                   "results go to a temporary file unless --results is given")
    p.add_argument("--results", type=Path, default=None, help="markdown file to append to")
    p.add_argument("--note", default="", help="a line stored with the result (e.g. other load)")
    p.add_argument("--side", choices=["tailorkit", "trainer"], help=argparse.SUPPRESS)
    p.add_argument("--result-json", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.max_train, args.max_eval, args.max_length, args.epochs = 32, 16, 32, 1
    if args.lr is None:
        args.lr = METHODS[args.method][1]
    return args


def make_recipe(args: argparse.Namespace, output_dir: Path):
    """The one recipe both sides read: tailorkit trains it, the Trainer side takes its data."""
    from tailorkit.recipe import recipe_from_dict

    methods = json.loads(json.dumps(METHODS[args.method][0]))
    if args.method == "features":
        methods[0]["features"].update(head_epochs=args.epochs, head_lr=args.lr)
    if args.method == "lora" and getattr(args, "lora_dropout", None) is not None:
        methods[0]["lora"]["dropout"] = args.lora_dropout
    return recipe_from_dict({
        "task": "classification",
        "model": {"name": args.model, "max_length": args.max_length},
        "data": {"name": args.data, "max_train_samples": args.max_train,
                 "max_eval_samples": args.max_eval},
        "methods": methods,
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "eval_batch_size": 64,
                  "lr": args.lr, "weight_decay": 0.01, "max_grad_norm": 1.0, "schedule": "linear",
                  "warmup_ratio": 0.0, "precision": "bf16" if args.bf16 else "fp32", "threads": args.threads,
                  "progress": False},
        "seed": args.seed,
        "output_dir": str(output_dir),
    }, source="bench/compare.py")


# -- the two sides, each run in its own subprocess ---------------------------------------------

def run_tailorkit(args: argparse.Namespace, work: Path) -> dict:
    from tailorkit import api

    recipe = make_recipe(args, work / "run")
    summary = json.loads((api.train(recipe) / api.SUMMARY).read_text())
    samples = round(summary["epochs"] * summary["data"]["train"])
    seconds = summary["train_seconds"]
    if "features" in summary:  # the loop ran over cached features: count the extraction too
        seconds = summary["features"]["extract_seconds"] + summary["features"]["head_seconds"]
    return {"samples": samples, "train_seconds": seconds, "samples_per_s": samples / seconds,
            "test_accuracy": summary["test"]["accuracy"],
            "trainable": summary["parameters"]["trainable"], "threads": summary["threads"]}


def run_trainer(args: argparse.Namespace, work: Path) -> dict:
    """What a user of the standard stack writes, given the same splits."""
    import numpy as np
    import torch
    from trainer_timer import timed_trainer  # bench/, beside this script
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        TrainingArguments,
        set_seed,
    )

    from tailorkit.data.prepare import prepare_data
    from tailorkit.sources import resolve_model

    torch.set_num_threads(args.threads)
    recipe = make_recipe(args, work / "unused")
    data = prepare_data(recipe.data, classes=True)
    path = resolve_model(args.model)
    tokenizer = AutoTokenizer.from_pretrained(path)

    def encode(split) -> list[dict]:
        enc = tokenizer(split.texts, truncation=True, max_length=args.max_length)
        return [{**{k: enc[k][i] for k in enc}, "labels": int(t)} for i, t in enumerate(split.targets)]

    train, validation, test = (encode(data.splits[s]) for s in ("train", "validation", "test"))
    set_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(data.labels), id2label=dict(enumerate(data.labels)),
        label2id={name: i for i, name in enumerate(data.labels)})
    model = trainer_method(args.method, model, args.lora_dropout)

    Timed, step_end = timed_trainer()

    def accuracy(pred) -> dict:
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    training_args = TrainingArguments(
        output_dir=str(work / "trainer"), per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=64, num_train_epochs=args.epochs, learning_rate=args.lr,
        weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="linear", warmup_steps=0,
        eval_strategy="epoch", save_strategy="no", report_to=[], seed=args.seed, bf16=args.bf16,
        use_cpu=True, disable_tqdm=True,
        train_sampling_strategy="group_by_length" if args.trainer_group_by_length else "random")
    trainer = Timed(model=model, args=training_args, train_dataset=train, eval_dataset=validation,
                    processing_class=tokenizer, data_collator=DataCollatorWithPadding(tokenizer),
                    compute_metrics=accuracy, callbacks=[step_end])
    trainer.train()
    out = trainer.predict(test)  # label_ids come back in the prediction order
    trainer.save_model(str(work / "model"))
    samples = round(args.epochs * len(train))
    return {"samples": samples, "train_seconds": Timed.train_seconds,
            "samples_per_s": samples / Timed.train_seconds,
            "test_accuracy": float((out.predictions.argmax(-1) == out.label_ids).mean()),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "threads": torch.get_num_threads()}


def trainer_method(method: str, model, lora_dropout: float | None = None):
    """The Trainer-side equivalent of each tailorkit method (BERT names: the user knows the model)."""
    if method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        from tailorkit.methods.lora import LoraConfig as Defaults  # tailorkit's defaults, kept in sync

        d = Defaults(r=8, alpha=16, **({} if lora_dropout is None else {"dropout": lora_dropout}))
        return get_peft_model(model, LoraConfig(
            task_type=TaskType.SEQ_CLS, target_modules=d.targets, r=d.r, lora_alpha=d.alpha,
            lora_dropout=d.dropout, bias=d.bias, modules_to_save=["classifier"]))
    prefix = model.base_model_prefix + "."
    frozen_blocks = model.config.num_hidden_layers - 2
    for name, p in model.named_parameters():
        if method == "top2":  # embeddings and blocks 1..n-2 frozen; top 2 blocks, pooler, classifier train
            block = name.removeprefix(prefix + "encoder.layer.").split(".")[0]
            p.requires_grad = not (name.startswith(prefix + "embeddings.")
                                   or (block.isdigit() and int(block) < frozen_blocks))
        elif method == "features":  # head-only: everything but the classifier frozen
            p.requires_grad = name.startswith("classifier.")
    return model


def child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix=f"compare-{args.side}-") as work:
        run = run_tailorkit if args.side == "tailorkit" else run_trainer
        result = run(args, Path(work))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.result_json.write_text(json.dumps(result))


# -- the parent: alternate the sides, then report ------------------------------------------------

def run_side(side: str, argv: list[str], args: argparse.Namespace, log_dir: Path) -> dict:
    out = log_dir / f"{side}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--side", side,
           "--threads", str(args.threads), "--result-json", str(out)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    if args.malloc_mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.malloc_mmap_threshold)
    started = time.perf_counter()
    with (log_dir / f"{side}.log").open("w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        tail = (log_dir / f"{side}.log").read_text()[-3000:]
        raise SystemExit(f"{side} side failed (exit {proc.returncode}):\n{tail}")
    return {**json.loads(out.read_text()), "end_to_end_s": wall}


def machine() -> dict:
    import torch
    import transformers

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    flags = Path("/proc/cpuinfo").read_text()
    return {"cpu": cpu, "cores": os.cpu_count(), "avx512_bf16": "avx512_bf16" in flags,
            "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": _version("peft"), "python": platform.python_version()}


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(args: argparse.Namespace, command: str, runs: dict[str, list[dict]], info: dict,
           load: tuple[float, float]) -> str:
    tk, tr = runs["tailorkit"], runs["trainer"]
    speed = median(tk, "samples_per_s") / median(tr, "samples_per_s")
    e2e = median(tr, "end_to_end_s") / median(tk, "end_to_end_s")
    precision = "bf16" if args.bf16 else "fp32"
    variant = ", Trainer group_by_length" if args.trainer_group_by_length else ""
    if args.malloc_mmap_threshold:
        variant += f", both sides MALLOC_MMAP_THRESHOLD_={args.malloc_mmap_threshold}"
    if args.method == "lora" and args.lora_dropout is not None:
        variant += f", lora dropout {args.lora_dropout:g}"
    rate = "effective samples/s" if args.method == "features" else "samples/s"
    lines = [
        f"### {args.method} · {args.data} · {precision}{variant}" + (" · SMOKE (no timing claims)"
                                                                       if args.smoke else ""),
        "",
        f"{datetime.now().strftime('%Y-%m-%d %H:%M')} · {info['cpu']}, {info['cores']} cores"
        f"{' (avx512_bf16)' if info['avx512_bf16'] else ''} · torch {info['torch']}, transformers "
        f"{info['transformers']}, peft {info['peft']}, Python {info['python']} · {args.threads} "
        f"thread(s) both sides · load average {load[0]:.2f} before, {load[1]:.2f} after"
        + (f" · {args.note}" if args.note else ""),
        "",
        f"`{command}`",
        "",
        f"{args.model}, max_length {args.max_length}, batch {args.batch_size}, lr {args.lr:g}, "
        f"{args.epochs:g} epoch(s), {tk[0]['samples'] / args.epochs:.0f} train examples, "
        f"{args.repeats} pair(s) of runs (medians); trainable parameters: tailorkit "
        f"{tk[0]['trainable']:,}, {TRAINER_NAME[args.method]} {tr[0]['trainable']:,}"
        + ("" if tk[0]["trainable"] == tr[0]["trainable"] else " (DIFFERENT)"),
        "",
        f"| side | {rate} | end-to-end s | peak RSS MB | test accuracy |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, side in (("tailorkit", tk), (TRAINER_NAME[args.method], tr)):
        each = " / ".join(f"{r['samples_per_s']:.1f}" for r in side)
        lines.append(f"| {name} | {median(side, 'samples_per_s'):.1f}"
                     + (f" ({each})" if len(side) > 1 else "")
                     + f" | {median(side, 'end_to_end_s'):.1f} | {median(side, 'peak_rss_mb'):.0f} | "
                     f"{median(side, 'test_accuracy'):.4f} |")
    lines.append(f"| **tailorkit vs Trainer** | **{speed:.2f}×** | **{e2e:.2f}× faster** | "
                 f"{median(tk, 'peak_rss_mb') / median(tr, 'peak_rss_mb'):.2f}× the Trainer's | "
                 f"{100 * (median(tk, 'test_accuracy') - median(tr, 'test_accuracy')):+.1f} points |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.side:
        child(args)
        return
    if args.threads is None:
        from tailorkit.runtime import default_threads

        args.threads = default_threads()
    command = "python bench/compare.py " + " ".join(shlex.quote(a) for a in argv)
    runs: dict[str, list[dict]] = {"tailorkit": [], "trainer": []}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="compare-") as logs:
        for i in range(args.repeats):
            for side in ("tailorkit", "trainer"):
                result = run_side(side, argv, args, Path(logs))
                runs[side].append(result)
                print(f"[{i + 1}/{args.repeats}] {side:9}  {result['samples_per_s']:7.1f} samples/s  "
                      f"end-to-end {result['end_to_end_s']:6.1f} s  RSS {result['peak_rss_mb']:6.0f} MB  "
                      f"test acc {result['test_accuracy']:.4f}  trainable {result['trainable']:,}  "
                      f"threads {result['threads']}", flush=True)
    text = report(args, command, runs, machine(), (load_before, os.getloadavg()[0]))
    print("\n" + text)
    target = args.results or (Path(tempfile.gettempdir()) / "tailorkit-compare-smoke.md" if args.smoke
                              else RESULTS)
    with target.open("a") as f:
        f.write("\n" + text)
    print(f"appended to {target}")


if __name__ == "__main__":
    main()
