"""The training loop: a plain PyTorch loop with the bookkeeping a real run needs.

Data order is a pure function of (seed, epoch) and the RNG state is saved at
step boundaries, so a run resumed from a checkpoint replays exactly what the
uninterrupted run would have done. Ctrl-C or SIGTERM finishes the current
step, writes a checkpoint and stops; a second Ctrl-C stops at once.

On several processes (torchrun) every process walks the same batches and takes its share of
each (train/distributed.py); the loss, the gradients and a stop request are summed over them,
so they all take the same steps and stop at the same one. Rank 0 alone writes.
"""

from __future__ import annotations

import math
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tailorkit.config.train import TrainConfig
from tailorkit.data.batching import EncodedSplit, epoch_batches
from tailorkit.device import autocast, grad_scaler, model_device, to_device
from tailorkit.errors import TailorError
from tailorkit.evaluate.evaluator import evaluate_split, metric_line, scalar_metrics
from tailorkit.evaluate.lm_head_loss import ChunkedLMLoss
from tailorkit.evaluate.metrics import is_better
from tailorkit.models.handle import ModelHandle
from tailorkit.track.jsonl import METRICS, JsonlSink
from tailorkit.track.trackers import open_trackers
from tailorkit.train import distributed
from tailorkit.train.checkpoint import (
    capture_rng,
    changed_state,
    load_checkpoint,
    save_checkpoint,
)
from tailorkit.train.frozen_prefix import FrozenPrefix, why_not
from tailorkit.train.lean_activations import lean_activations
from tailorkit.train.losses import TaskLoss, penalty
from tailorkit.train.memory_estimate import MemoryEstimate, estimate_memory
from tailorkit.train.optim import build_optimizer, build_scheduler, lr_factor
from tailorkit.train.recompute import activation_checkpointing
from tailorkit.train.setup import TrainingHooks


class Interrupted(Exception):
    """Training stopped on a signal after writing a checkpoint at optimiser step `step`."""

    def __init__(self, step: int) -> None:
        super().__init__(f"stopped at step {step}")
        self.step = step


@dataclass
class LoopState:
    epoch: int = 0
    batch: int = 0  # micro-batches consumed in the current epoch
    step: int = 0  # optimiser steps
    samples: int = 0
    train_seconds: float = 0.0
    best_metric: float | None = None
    bad_evals: int = 0
    stopped_early: bool = False
    last_eval_step: int = -1
    skipped_steps: int = 0  # updates skipped for a NaN/inf loss (train.on_nonfinite: skip_batch)
    overflow_steps: int = 0  # fp16: updates the gradient scaler skipped (inf gradients; it backs off)


class Diverged(TailorError):
    """The loss or the gradients stopped being finite (train.on_nonfinite: stop)."""


class _StopFlag:
    """First SIGINT/SIGTERM asks for a clean stop; a second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class _NoSink:
    """What a process other than rank 0 logs to: nothing."""

    def log(self, kind: str, step: int, values: dict) -> None:
        pass

    def truncate_after(self, step: int) -> None:
        pass

    def close(self, run_dir: Path | None = None) -> None:
        pass


class Trainer:
    def __init__(self, handle: ModelHandle, methods: list[TrainingHooks], train: EncodedSplit,
                 validation: EncodedSplit, cfg: TrainConfig, loss_fn: TaskLoss, labels: list[str],
                 run_dir: Path, seed: int, headline: tuple[str, ...] = ("loss",)) -> None:
        self.handle, self.methods, self.cfg = handle, methods, cfg
        self.headline = headline  # the metrics a validation line shows (the task's)
        self.train_data, self.val_data = train, validation
        self.loss_fn, self.labels, self.run_dir, self.seed = loss_fn, labels, run_dir, seed
        self.world = distributed.world()
        self.device = model_device(handle.model)
        self.scaler = grad_scaler(self.device, cfg.precision)
        if cfg.batch_size < self.world.size:
            raise TailorError(f"train.batch_size: {cfg.batch_size} examples cannot be split over "
                              f"{self.world.size} processes; give at least {self.world.size}")
        self.sink = (JsonlSink(run_dir / METRICS, open_trackers(run_dir, cfg.report_to, cfg.mlflow_uri))
                     if self.world.main else _NoSink())
        scales: dict[str, float] = {}
        for m in methods:
            for name, factor in m.lr_scales(handle).items():
                scales[name] = scales.get(name, 1.0) * factor
        self.optimizer = build_optimizer(handle, cfg, scales)
        n_batches = math.ceil(len(train) / cfg.batch_size)
        self.steps_per_epoch = math.ceil(n_batches / cfg.grad_accum)
        self.total_steps = cfg.max_steps or math.ceil(cfg.epochs * self.steps_per_epoch)
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, cfg)
        if self.world.main and cfg.warmup_steps and cfg.warmup_steps >= self.total_steps:
            peak = cfg.peak_lr * lr_factor(self.total_steps - 1, self.total_steps, cfg)
            print(f"warning: train.warmup_steps is {cfg.warmup_steps} but the run has {self.total_steps} "
                  f"steps: the learning rate rises to {peak:.3g} and never reaches train.lr "
                  f"({cfg.peak_lr:g})", file=sys.stderr)
        self.state = LoopState()
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.last_val: dict = {}
        self.best_val: dict = {}  # validation metrics of best_weights (early stopping)
        # Called as on_evaluate(step, metrics) after each validation; a search trial reports
        # there and raises to stop a run its pruner gave up on.
        self.on_evaluate: Callable[[int, dict], None] | None = None
        self.prefix, self.prefix_report = self._plan_prefix()
        chunked = (handle.output == "next_token" and self.prefix is None
                   and not any(m.needs_logits for m in methods))
        self.head_loss = ChunkedLMLoss.for_model(handle.model, cfg.lm_head_chunk) if chunked else None
        self._checkpointed_step: int | None = None

    # -- public -----------------------------------------------------------------
    def fit(self, resume: bool = False) -> LoopState:
        if resume:
            self._restore()
        elif self.world.rank:  # dropout masks differ between processes, as between batches
            torch.manual_seed(self.seed * 1009 + self.world.rank)
        distributed.broadcast_model(self.handle.model)
        if self.world.size > 1 and self.world.main:
            self._tell_batch_size()
        try:
            with _StopFlag() as stop, tqdm(
                total=self.total_steps, initial=self.state.step, unit="step", desc="train",
                disable=not self.cfg.progress or not self.world.main, dynamic_ncols=True,
            ) as bar, activation_checkpointing(self.handle, self.cfg.activation_checkpointing), \
                    lean_activations(self.handle.model):
                while self.state.step < self.total_steps and not self.state.stopped_early:
                    self._run_epoch(stop, bar)
            if self.state.last_eval_step != self.state.step:
                self._evaluate()
            if self._checkpointed_step != self.state.step:  # a crash after training resumes here
                self._checkpoint()
        finally:
            if self.prefix is not None:
                self.prefix_report.update(self.prefix.report())
                self.prefix.close()
        if self.best_weights is not None:
            self.handle.model.load_state_dict(self.best_weights, strict=False)
            self.last_val = self.best_val or self.last_val  # report the weights we keep
        return self.state

    def memory_estimate(self) -> tuple[MemoryEstimate, int | None]:
        """Peak memory this loop will reach, and the example length assumed (train/memory_estimate.py)."""
        return estimate_memory(self.handle, self.train_data, self.cfg, self.head_loss)

    def trained_parameter_count(self) -> tuple[int, int]:
        """(trainable, total); trainable counts what trained at any point, since gradual
        unfreezing opens more blocks over time."""
        stepped = {id(p) for p in self.optimizer.state}
        params = list(self.handle.model.parameters())
        trained = sum(p.numel() for p in params if p.requires_grad or id(p) in stepped)
        return trained, sum(p.numel() for p in params)

    # -- internals --------------------------------------------------------------
    def _plan_prefix(self) -> tuple[FrozenPrefix | None, dict]:
        mode = self.cfg.frozen_prefix
        reason = "train.frozen_prefix: train" if mode == "train" else why_not(self.handle, self.methods)
        if reason is None:
            # Only rank 0 writes in the run directory: the others spill their caches elsewhere.
            spill = self.run_dir if self.world.main else Path(tempfile.mkdtemp(prefix="tailor-prefix-"))
            prefix = FrozenPrefix(self.handle, self.cfg.cache_memory_mb, spill, mode == "cache")
            probe = to_device(self.val_data.collate(list(range(min(4, len(self.val_data))))), self.device)
            if mode == "eval" or prefix.agrees(probe):
                return prefix, {"mode": mode}
            reason = "self-check: the cached path differs from the whole model"
        return None, {"mode": "off", "why": reason}

    def _run_epoch(self, stop: _StopFlag, bar: tqdm) -> None:
        s, cfg = self.state, self.cfg
        for method in self.methods:
            method.on_epoch_start(self.handle, s.epoch)
        trainable = [p for p in self.handle.model.parameters() if p.requires_grad]
        batches = epoch_batches(self.train_data.lengths, cfg.batch_size, self.seed, s.epoch, cfg.grouping)
        self.handle.model.train()
        if self.prefix is not None:
            self.prefix.deterministic()
        while s.batch < len(batches) and s.step < self.total_steps:
            group = batches[s.batch : s.batch + cfg.grad_accum]
            lr = self.scheduler.get_last_lr()[0]  # the rate this step uses
            started = time.perf_counter()
            loss = self._step(group, trainable)
            elapsed = time.perf_counter() - started
            n = sum(len(b) for b in group)
            s.batch += len(group)
            s.step += 1
            for method in self.methods:
                method.on_step(self.handle, s.step, self.total_steps)
            s.samples += n
            s.train_seconds += elapsed
            self.sink.log("train", s.step, {"epoch": s.epoch + s.batch / len(batches), "loss": loss,
                                            "lr": lr, "samples_per_s": n / elapsed})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", sps=f"{s.samples / s.train_seconds:.1f}",
                            epoch=s.epoch + 1)
            if cfg.eval_steps and s.step % cfg.eval_steps == 0:
                self._evaluate()
            if s.batch >= len(batches):  # epoch done: evaluate, then checkpoint at the boundary
                s.epoch, s.batch = s.epoch + 1, 0
                if not cfg.eval_steps:
                    self._evaluate()
                self._checkpoint()
                return
            stopping = stop.requested
            if self.world.size > 1:  # all stop at the same step, whichever process got the signal
                stopping = distributed.sum_floats([float(stopping)], self.device)[0] > 0
            if s.step % cfg.checkpoint_steps == 0 or stopping:
                self._checkpoint()
            if stopping:
                raise Interrupted(s.step)
            if s.stopped_early:
                return

    def _step(self, group: list[list[int]], trainable: list[torch.nn.Parameter]) -> float:
        cfg = self.cfg
        total = 0.0
        n_examples = sum(len(b) for b in group)  # over all processes
        for indices in group:
            mine = distributed.share(indices, self.world)  # all of it on one process
            if not mine:  # a last batch smaller than the number of processes
                continue
            batch = to_device(self.train_data.collate(mine), self.device)
            with autocast(self.device, cfg.precision):
                if self.head_loss:  # the model stops at its last hidden states
                    logits = self.head_loss.hidden_states(self.handle, batch)
                    loss = self.head_loss(logits, batch["labels"])
                else:
                    logits = (self.prefix.logits(self.train_data, mine, batch) if self.prefix
                              else self.handle.forward(batch))
            if not self.head_loss:
                loss = self.loss_fn(logits, batch["labels"])
            # Weight each micro-batch by its size so accumulation (and the sum over processes)
            # equals one big batch.
            share = len(mine) / n_examples
            objective = loss * self.loss_fn.objective_scale
            for method in self.methods:  # e.g. distillation adds its teacher term
                objective = method.objective(objective, logits, batch)
            loss, objective = loss * share, objective * share
            if (cfg.l1 or cfg.l2) and self.world.main:  # rank 0 always has a share; counted once
                extra = penalty(trainable, cfg.l1, cfg.l2) / len(group)
                loss, objective = loss + extra, objective + extra
            self.scaler.scale(objective).backward()  # fp16: scaled so small gradients survive
            total += float(loss.detach())
        if self.world.size > 1:
            total = distributed.sum_floats([total], self.device)[0]
            distributed.sum_gradients(trainable)
        self.scaler.unscale_(self.optimizer)  # true gradients before clipping (no-op unless fp16)
        # The norm is needed anyway (with clipping off, an infinite bound clips nothing).
        norm = float(torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm or math.inf))
        if math.isfinite(total) and self.scaler.is_enabled():
            # fp16: inf gradients mean the scale is too high; the scaler skips this update itself
            # and halves the scale, which is not divergence.
            self.scaler.step(self.optimizer)
            self.state.overflow_steps += not math.isfinite(norm)
        elif math.isfinite(total) and math.isfinite(norm):
            self.optimizer.step()
        else:
            self._nonfinite(total, norm)
        self.scaler.update()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total

    def _nonfinite(self, loss: float, norm: float) -> None:
        """A step went NaN/inf: the weights are still those before it (no update was made)."""
        cfg, step = self.cfg, self.state.step + 1
        what = f"the loss is {loss}" if not math.isfinite(loss) else f"the gradient norm is {norm}"
        self.optimizer.zero_grad(set_to_none=True)
        if cfg.on_nonfinite == "skip_batch":
            self.state.skipped_steps += 1
            tqdm.write(f"warning: step {step}: {what}; this batch's update is skipped "
                       "(train.on_nonfinite: skip_batch)", file=sys.stderr)
            return
        clip = "" if cfg.max_grad_norm else ", turn on clipping (train.max_grad_norm: 1.0)"
        kept = (f"its last checkpoint, step {self._checkpointed_step}, holds finite weights"
                if self._checkpointed_step else "no checkpoint was written yet")
        raise Diverged(f"step {step}: {what}: training diverged. Lower train.lr (now {cfg.peak_lr:g}){clip}, "
                       "or skip such batches with train.on_nonfinite: skip_batch; then start again "
                       f"with --overwrite ({kept})")

    def _evaluate(self) -> None:
        s, es = self.state, self.cfg.early_stopping
        metrics = evaluate_split(self.handle, self.val_data, self.labels, self.loss_fn,
                                 self.cfg.eval_batch_size, self.cfg.precision,
                                 self.prefix.logits if self.prefix else None, self.cfg.lm_head_chunk)
        self.last_val = metrics
        s.last_eval_step = s.step
        self.sink.log("eval", s.step, {"split": "validation", **scalar_metrics(metrics)})
        if self.cfg.progress:
            tqdm.write(f"step {s.step}: validation " + metric_line(metrics, self.headline), file=sys.stderr)
        if self.on_evaluate is not None:
            self.on_evaluate(s.step, metrics)
        if es is None:
            return
        value = metrics.get(es.metric)
        assert value is not None, es.metric  # the recipe validator checked the name
        if is_better(es.metric, value, s.best_metric, es.min_delta):
            s.best_metric, s.bad_evals = value, 0
            self.best_val = metrics
            self.best_weights = changed_state(self.handle.model, self.optimizer)
        else:
            s.bad_evals += 1
            s.stopped_early = s.bad_evals >= es.patience

    def _checkpoint(self) -> None:
        self._checkpointed_step = self.state.step
        rng = distributed.gather(capture_rng())  # every process's: each resumes its own dropout
        if not self.world.main:
            return
        save_checkpoint(self.run_dir, self.handle.model, self.optimizer, self.scheduler,
                        {**self.state.__dict__, "last_val": scalar_metrics(self.last_val),
                         "best_val": scalar_metrics(self.best_val)},
                        rng, self.best_weights, self.scaler)

    def _restore(self) -> None:
        loop_state, self.best_weights = load_checkpoint(
            self.run_dir, self.handle.model, self.optimizer, self.scheduler, self.scaler, self.world.rank
        )
        self.last_val = loop_state.pop("last_val", {})
        self.best_val = loop_state.pop("best_val", {})
        self.state = LoopState(**loop_state)
        self._checkpointed_step = self.state.step
        self.sink.truncate_after(self.state.step)
        if self.world.main:
            print(f"resuming at step {self.state.step} of {self.total_steps}", file=sys.stderr)

    def _tell_batch_size(self) -> None:
        cfg, w = self.cfg, self.world
        print(f"data parallel: {w.size} processes; effective batch {cfg.batch_size * cfg.grad_accum} "
              f"examples per step = batch_size {cfg.batch_size} split over {w.size} processes "
              f"(~{math.ceil(cfg.batch_size / w.size)} each) x grad_accum {cfg.grad_accum}", file=sys.stderr)


def throughput(state: LoopState) -> float | None:
    """Training samples per second; None when nothing trained (JSON has no NaN)."""
    return round(state.samples / state.train_seconds, 2) if state.train_seconds else None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
