"""Where one tailorkit training step spends its time, and the ceiling no trainer can beat.

    .venv/bin/python bench/profile_step.py --method full --data tweet-sentiment --threads 1

Builds the run exactly as `tailor train` does (pipeline.setup_run, the loop's Trainer), then times the
phases of real steps over the epoch's own length-grouped batches: collate, forward, loss,
backward, clipping, optimiser, scheduler. Against it: the same batches through forward+backward
alone (the ceiling of any trainer with the same model and padding), the eval-mode forward (what
feature extraction pays once), peak RSS after the steps, a validation pass and a checkpoint, and
the AdamW step alone unfused (tailorkit) and fused (the Trainer's default). Then a
torch.profiler table of the top operators of a few steps. Read it on a quiet machine: on a
shared one, compare only numbers printed by the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import METHODS, make_recipe  # noqa: E402  (bench/ is not a package)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", required=True, choices=[m for m in METHODS if m != "features"])
    p.add_argument("--data", required=True)
    p.add_argument("--model", default="minilm-l6")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--steps", type=int, default=12, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--lora-dropout", type=float, default=None, help="lora: default tailorkit's (0)")
    args = p.parse_args()
    ns = argparse.Namespace(method=args.method, data=args.data, model=args.model, epochs=1,
                            max_train=2000, max_eval=64, max_length=args.max_length,
                            batch_size=args.batch_size, lr=METHODS[args.method][1], bf16=args.bf16,
                            threads=args.threads, seed=42, lora_dropout=args.lora_dropout)
    from tailorkit.data.batching import epoch_batches
    from tailorkit.pipeline import make_trainer, setup_run
    from tailorkit.train.lean_activations import lean_activations

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as training:
        recipe = make_recipe(ns, Path(tmp) / "run")
        Path(recipe.output_dir).mkdir()
        s = setup_run(recipe, Path(recipe.output_dir))
        loop = make_trainer(s, recipe, Path(recipe.output_dir))
        data, cfg = loop.train_data, loop.cfg
        batches = epoch_batches(data.lengths, cfg.batch_size, recipe.seed, 0, cfg.grouping)
        batches = batches[: args.steps + 2]
        model = s.handle.model
        model.train()
        # as the loop trains: rebuilt activations, cheaper dropout masks (train/fast_dropout.py)
        training.enter_context(lean_activations(model))
        print(f"peak RSS after setup: {rss_mb():.0f} MB")
        trainable = [q for q in model.parameters() if q.requires_grad]
        phases: dict[str, list[float]] = {}

        def timed(name, fn):
            started = time.perf_counter()
            out = fn()
            phases.setdefault(name, []).append(time.perf_counter() - started)
            return out

        autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16)  # noqa: E731
        for i, indices in enumerate(batches):
            if i == 2:
                phases.clear()  # the first steps warm kernels and allocators up
            batch = timed("collate", lambda ix=indices: data.collate(ix))
            with autocast():
                logits = timed("forward", lambda b=batch: s.handle.forward(b))
            loss = timed("loss", lambda lg=logits, b=batch: loop.loss_fn(lg, b["labels"]))
            timed("backward", loss.backward)
            timed("clip", lambda: torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm))
            timed("optimizer", loop.optimizer.step)
            timed("scheduler", loop.scheduler.step)
            timed("zero_grad", lambda: loop.optimizer.zero_grad(set_to_none=True))
        samples = sum(len(b) for b in batches[2:])
        tokens = sum(int(data.lengths[b].max()) * len(b) for b in batches[2:])
        total = sum(sum(v) for v in phases.values())
        print(f"{args.method} on {args.data}: {len(batches) - 2} steps, {samples} samples, "
              f"{tokens / samples:.0f} padded tokens/sample, {args.threads} thread(s), "
              f"{'bf16' if args.bf16 else 'fp32'}")
        print(f"tailorkit step: {total / samples * 1000:.1f} ms/sample = {samples / total:.1f} samples/s")
        for name, values in phases.items():
            share = 100 * sum(values) / total
            print(f"  {name:10} {sum(values) / samples * 1000:7.2f} ms/sample  {share:5.1f}%"
                  f"   (median step {statistics.median(values) * 1000:.1f} ms)")

        # Ceiling: forward + backward only, same batches, no optimiser.
        started = time.perf_counter()
        for indices in batches[2:]:
            batch = data.collate(indices)
            with autocast():
                loop.loss_fn(s.handle.forward(batch), batch["labels"]).backward()
            model.zero_grad(set_to_none=True)
        ceiling = time.perf_counter() - started
        print(f"ceiling (collate + forward + backward only): {ceiling / samples * 1000:.1f} ms/sample = "
              f"{samples / ceiling:.1f} samples/s")
        print(f"peak RSS after the training steps: {rss_mb():.0f} MB")
        model.eval()  # the inference forward: no dropout, no autograd
        started = time.perf_counter()
        with torch.inference_mode():
            for indices in batches[2:]:
                with autocast():
                    s.handle.forward(data.collate(indices))
        forward = time.perf_counter() - started
        model.train()
        print(f"pure forward (eval, inference mode): {forward / samples * 1000:.1f} ms/sample = "
              f"{samples / forward:.1f} samples/s")
        loop._evaluate()  # batch eval_batch_size (64) over max_eval validation examples
        print(f"peak RSS after a validation pass: {rss_mb():.0f} MB")
        loop._checkpoint()
        print(f"peak RSS after writing a checkpoint: {rss_mb():.0f} MB")

        # The optimiser step the way the Trainer runs it (fused AdamW) on the same parameters.
        for q in trainable:
            q.grad = torch.zeros_like(q)
        for fused in (False, True):
            opt = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.01, fused=fused)
            opt.step()
            started = time.perf_counter()
            for _ in range(5):
                opt.step()
            print(f"AdamW step alone, fused={fused}: {(time.perf_counter() - started) / 5 * 1000:.1f} ms "
                  f"over {sum(q.numel() for q in trainable):,} trainable parameters")
        model.zero_grad(set_to_none=True)

        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for indices in batches[2:6]:
                batch = data.collate(indices)
                with autocast():
                    loss = loop.loss_fn(s.handle.forward(batch), batch["labels"])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                loop.optimizer.step()
                loop.optimizer.zero_grad(set_to_none=True)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
