"""The transformers Trainer timed as tailorkit times its own steps, for every benchmark's
Trainer side: from fetching a batch to the end of the scheduler step (validation passes and
checkpoint writes fall outside)."""

from __future__ import annotations

import time


def timed_trainer():
    """(a Trainer subclass, the callback to pass it); the subclass's `train_seconds` sums the steps."""
    from transformers import Trainer, TrainerCallback

    class Timed(Trainer):
        step_started, train_seconds = 0.0, 0.0

        def get_batch_samples(self, *a, **kw):
            Timed.step_started = time.perf_counter()
            return super().get_batch_samples(*a, **kw)

    class StepEnd(TrainerCallback):
        def on_step_end(self, *a, **kw):
            Timed.train_seconds += time.perf_counter() - Timed.step_started

    return Timed, StepEnd()
