"""Causal-LM SFT memory and speed: tailorkit against transformers Trainer + PEFT, side by side.

    .venv/bin/python bench/lm_memory.py --steps 20 --threads 1

Every side instruction-tunes the same model (default SmolLM2-135M-Instruct) on the same encoded
ChatterBot examples (tailorkit's own `prepare_chat_data`: the same tokens and the same masked
prompts), LoRA r=8 alpha=16 dropout 0 on every linear layer, batch 8, length 128, fp32, AdamW
lr 5e-4 with weight decay 0.01, clipping 1.0 and a linear schedule, for `--steps` optimiser steps.
Each side runs in its own subprocess, one after the other, so its peak is its own. The
tailorkit sides run on the allocator `tailor train` picks (tcmalloc where installed:
src/tailorkit/launch.py), the Trainer sides on the C library's, as their users run them:

- peak RSS: the process's VmHWM, read from /proc at the end (model load, training, validation);
- samples/s: batch x steps over the summed step time (tailorkit's own `samples_per_second`; for
  the Trainer a timer from `get_batch_samples` to `on_step_end`);
- validation loss: the mean token loss over the validation split's answers (tailorkit: its
  summary; Trainer: the same sum over the same batches, computed by this script).

Sides: `tailorkit` (defaults: chunked head loss), `tailorkit-plain` (train.lm_head_chunk: 0),
`tailorkit-ckpt` (train.activation_checkpointing: true), `tailorkit-qlora` (a 4-bit NF4 base),
`trainer` and `trainer-ckpt` (Trainer + PEFT, with transformers' gradient checkpointing).
The result goes into bench/RESULTS.md's causal-LM memory section with the date and the exact
command; `--smoke` runs two steps on whatever model and data are given, writes elsewhere and
makes no claims (CI runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "RESULTS.md"
SECTION = "## Causal-LM memory (issue #20)"
SIDES = ("tailorkit", "tailorkit-plain", "tailorkit-ckpt", "tailorkit-qlora", "trainer", "trainer-ckpt")
TAILORKIT_TRAIN = {"tailorkit": {}, "tailorkit-plain": {"lm_head_chunk": 0},
                   "tailorkit-ckpt": {"activation_checkpointing": True}, "tailorkit-qlora": {}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m", help="catalogue name or model folder")
    p.add_argument("--data", default="chatterbot-qa", help="catalogue name or a prompt/completion file")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, from {', '.join(SIDES)}")
    p.add_argument("--note", default="", help="appended to the result's header (e.g. machine load)")
    p.add_argument("--results", type=Path,
                   help="append here (default: bench/RESULTS.md; --smoke: a temporary file)")
    p.add_argument("--smoke", action="store_true", help="two steps, result to a temporary file")
    p.add_argument("--side", help=argparse.SUPPRESS)
    p.add_argument("--result-json", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.steps = 2
    return args


def make_recipe(args: argparse.Namespace, side: str, output_dir: Path):
    from tailorkit.recipe import recipe_from_dict

    data = ({"name": args.data} if not Path(args.data).exists()
            else {"train": args.data, "split": {"validation": 0.2, "test": 0.2}})
    model = {"name": args.model, "max_length": args.max_length}
    lora = {"r": 8, "alpha": 16, "dropout": 0.0}
    if side == "tailorkit-qlora":
        model["quantize_base"] = "nf4"
    return recipe_from_dict({
        "task": "sft", "model": model, "data": data, "methods": [{"lora": lora}],
        "train": {"max_steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                  "precision": args.precision, "threads": args.threads, "progress": False,
                  **TAILORKIT_TRAIN.get(side, {})},
        "generation": {"samples": 0}, "output_dir": str(output_dir)})


def run_tailorkit(args: argparse.Namespace, work: Path) -> dict:
    from tailorkit import api

    summary = json.loads((api.train(make_recipe(args, args.side, work / "run")) / api.SUMMARY).read_text())
    return {"samples_per_s": summary["samples_per_second"], "val_loss": summary["validation"]["loss"],
            "trainable": summary["parameters"]["trainable"]}


def run_trainer(args: argparse.Namespace, work: Path) -> dict:
    """What a user of the standard stack writes, given the same encoded examples."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from trainer_timer import timed_trainer  # bench/, beside this script
    from transformers import (
        DataCollatorForSeq2Seq,
        TrainingArguments,
        set_seed,
    )

    from tailorkit.data.chat import prepare_chat_data
    from tailorkit.models.handle import load_causal_lm
    from tailorkit.sources import resolve_model

    torch.set_num_threads(args.threads)
    recipe = make_recipe(args, "trainer", work / "unused")
    path = resolve_model(args.model)
    # AutoModelForCausalLM in fp32 and its tokenizer, the pad token set to EOS as a user would
    base = load_causal_lm(path)
    tokenizer = base.tokenizer
    data = prepare_chat_data(recipe.data, tokenizer, args.max_length).splits
    train = [{"input_ids": i, "labels": y} for i, y in zip(data["train"].input_ids, data["train"].labels,
                                                            strict=True)]
    set_seed(recipe.seed)
    model = get_peft_model(base.model, LoraConfig(task_type=TaskType.CAUSAL_LM, target_modules="all-linear",
                                             r=8, lora_alpha=16, lora_dropout=0.0))

    Timed, step_end = timed_trainer()
    checkpointing = args.side == "trainer-ckpt"
    training_args = TrainingArguments(
        output_dir=str(work / "trainer"), per_device_train_batch_size=args.batch_size, max_steps=args.steps,
        learning_rate=args.lr, weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="linear",
        save_strategy="no", report_to=[], seed=recipe.seed, bf16=args.precision == "bf16", use_cpu=True,
        disable_tqdm=True, gradient_checkpointing=checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None)
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
    trainer = Timed(model=model, args=training_args, train_dataset=train, data_collator=collator,
                    callbacks=[step_end])
    trainer.train()
    return {"samples_per_s": args.steps * args.batch_size / Timed.train_seconds,
            "val_loss": validation_loss(model, data["validation"], args.precision),
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}


def validation_loss(model, split, precision: str) -> float:
    """Mean token loss over the answers, as tailorkit's evaluator sums it."""
    import torch

    from tailorkit.evaluate.token_loss import token_loss_sum

    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
        for start in range(0, len(split), 8):
            batch = split.collate(list(range(start, min(start + 8, len(split)))))
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            s, n = token_loss_sum(logits, batch["labels"])
            total, count = total + float(s), count + int(n)
    return total / count


def peak_rss_mb() -> float:
    """This process's high-water mark (ru_maxrss would also count what the parent held at fork)."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def child(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix=f"lm-memory-{args.side}-") as work:
        run = run_trainer if args.side.startswith("trainer") else run_tailorkit
        result = run(args, Path(work))
    from tailorkit.runtime import allocator

    result = {**result, "peak_rss_mb": peak_rss_mb(), "allocator": allocator()}
    args.result_json.write_text(json.dumps(result))


def run_side(side: str, argv: list[str], log_dir: Path) -> dict:
    out = log_dir / f"{side}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--side", side, "--result-json", str(out)]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    if side.startswith("tailorkit"):  # the allocator `tailor train` would run on
        from tailorkit.launch import allocator_env

        env = allocator_env(env) or env
    with (log_dir / f"{side}.log").open("w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{side} side failed (exit {proc.returncode}):\n"
                         + (log_dir / f"{side}.log").read_text()[-3000:])
    return json.loads(out.read_text())


def report(args: argparse.Namespace, command: str, results: dict[str, dict],
           load: tuple[float, float]) -> str:
    import torch
    import transformers

    base = results.get("trainer")
    title = (f"#### causal-LM SFT memory · {args.model} · LoRA r=8 · batch {args.batch_size} x "
             f"{args.max_length} · {args.precision}" + (" · SMOKE (no claims)" if args.smoke else ""))
    header = (f"{datetime.now().strftime('%Y-%m-%d %H:%M')} · {os.cpu_count()} cores · torch "
              f"{torch.__version__}, transformers {transformers.__version__} · {args.threads} thread(s) · "
              f"{args.steps} steps · load average {load[0]:.2f} before, {load[1]:.2f} after"
              + (f" · {args.note}" if args.note else ""))
    lines = [title, "", header, "", f"`{command}`", "",
             "| side | allocator | peak RSS MB | vs Trainer+PEFT | samples/s | vs Trainer+PEFT "
             "| validation loss | trainable |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for side, r in results.items():
        rss = f"{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}×" if base else "-"
        sps = f"{r['samples_per_s'] / base['samples_per_s']:.2f}×" if base else "-"
        lines.append(f"| {side} | {r['allocator']} | {r['peak_rss_mb']:.0f} | {rss} "
                     f"| {r['samples_per_s']:.2f} | {sps} | {r['val_loss']:.4f} | {r['trainable']:,} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.side:
        return child(args)
    sides = [s.strip() for s in args.sides.split(",")]
    unknown = set(sides) - set(SIDES)
    if unknown:
        raise SystemExit(f"--sides: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SIDES)}")
    forwarded = [a for a in argv if a != "--smoke"] + (["--smoke"] if args.smoke else [])
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="lm-memory-") as logs:
        results = {}
        for side in sides:
            print(f"running {side} ...", file=sys.stderr, flush=True)
            results[side] = run_side(side, forwarded, Path(logs))
    command = "python bench/lm_memory.py " + shlex.join(argv)
    text = report(args, command, results, (load_before, os.getloadavg()[0]))
    print(text)
    target = args.results or (Path(tempfile.gettempdir()) / "lm_memory_smoke.md" if args.smoke else RESULTS)
    add_to_results(target, text)
    print(f"added to {target}", file=sys.stderr)


def add_to_results(path: Path, text: str) -> None:
    """At the end of the file's causal-LM memory section, where the earlier tables are; at the
    end of the file where it has none."""
    doc = path.read_text() if path.exists() else ""
    start = doc.find(SECTION)
    end = doc.find("\n## ", start + len(SECTION)) if start >= 0 else -1  # the next section
    end = len(doc) if end < 0 else end + 1
    path.write_text(doc[:end].rstrip("\n") + "\n\n" + text + ("\n" + doc[end:] if doc[end:] else ""))


if __name__ == "__main__":
    main()
