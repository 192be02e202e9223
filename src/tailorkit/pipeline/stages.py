"""The stages of a run. Each is a small class: what it reads from the Run, what it adds to it,
and what it leaves in the run directory.

    prepare   recipe -> Run.setup (data, base model, methods applied)     in memory; before.json (LMs)
    train     Run.setup -> trained weights, Run.trainer/state              checkpoint/, metrics.jsonl
    save      trained weights -> model/                                    model/
    evaluate  model + test split -> Run.test                               predictions / generations

A new step (compression, export) is one more subclass in `run.STAGES`, reading its options from
its own recipe section. On resume every stage runs again, except those with `skip_when_done`
whose output is already on disk; training itself resumes from its checkpoint, and a run that
had finished training restores the final checkpoint instead of training again.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from tailorkit.config.recipe import Recipe
from tailorkit.data.summary import data_summary
from tailorkit.errors import TailorError
from tailorkit.evaluate.evaluator import scalar_metrics
from tailorkit.methods import model_owner
from tailorkit.models.target_scaling import fold_target_scaling
from tailorkit.pipeline import assemble
from tailorkit.pipeline.run_dir import MODEL, save_model_atomically
from tailorkit.tasks import Task
from tailorkit.train.checkpoint import find_checkpoint
from tailorkit.train.loop import LoopState, Trainer
from tailorkit.train.memory_estimate import MemoryEstimate
from tailorkit.train.setup import Setup


@dataclass
class Run:
    recipe: Recipe
    run_dir: Path
    task: Task
    resume: bool = False
    recorded_data: dict | None = None  # on resume: the data fingerprints the run started with
    on_evaluate: Callable[[int, dict], None] | None = None  # a search trial reports here
    setup: Setup | None = None
    trainer: object = None  # the Trainer, or a method's own loop
    state: LoopState | None = None
    parameters: tuple[int, int] = (0, 0)  # (trained, total) of the model as it trained
    memory: MemoryEstimate | None = None  # the gradient loop's, made before its first step
    test: dict = field(default_factory=dict)
    # Where `prepare` may write (generations before training): the run directory, except on a
    # process other than rank 0, which writes nothing there.
    scratch_dir: Path | None = None


class Stage:
    name: ClassVar[str]
    # The recipe section (a typed config in tailorkit.config) the stage takes its options
    # from; an optional section that the recipe leaves out turns the stage off.
    section: ClassVar[str | None] = None
    skip_when_done: ClassVar[bool] = False  # on resume, a finished stage's output on disk stands
    # Several processes (torchrun): every one prepares and trains; the stages after training
    # (writing the model, test outputs, compression) are rank 0's alone.
    all_processes: ClassVar[bool] = False

    def enabled(self, recipe: Recipe) -> bool:
        return self.section is None or getattr(recipe, self.section) is not None

    def run(self, run: Run) -> None:
        raise NotImplementedError


class Prepare(Stage):
    name = "prepare"
    section = "data"
    all_processes = True

    def run(self, run: Run) -> None:
        run.setup = assemble.setup_run(run.recipe, run.scratch_dir or run.run_dir)
        changed = [name for name, value in (run.recorded_data or {}).items()
                   if run.setup.fingerprint.get(name) != value]
        if changed:
            raise TailorError(f"{run.run_dir}: the {', '.join(changed)} data changed since the run started "
                              "(files or the catalogue read differently now); resuming would mix the two. "
                              "Start a new run, or resume anyway with --allow-data-change")
        if run.recipe.train.progress and run.scratch_dir is None:
            s = run.setup
            for line in data_summary(s.splits, s.labels, run.recipe.model.max_length):
                print(line, file=sys.stderr)


class Train(Stage):
    name = "train"
    section = "train"
    all_processes = True

    def run(self, run: Run) -> None:
        run.trainer = assemble.make_trainer(run.setup, run.recipe, run.run_dir)
        run.trainer.on_evaluate = run.on_evaluate
        if isinstance(run.trainer, Trainer):  # the gradient loop (not a scikit-learn head's fit)
            run.memory, length = run.trainer.memory_estimate()
            if run.recipe.train.progress and run.trainer.world.main:
                print(run.memory.line(run.trainer.cfg.batch_size, length), file=sys.stderr)
        started = time.perf_counter()
        run.state = run.trainer.fit(resume=run.resume and find_checkpoint(run.run_dir) is not None)
        run.parameters = run.trainer.trained_parameter_count()  # before a method converts the model
        for method in run.setup.methods:
            method.on_fit_end(run.setup, time.perf_counter() - started)


class Save(Stage):
    name = "save"
    skip_when_done = True

    def run(self, run: Run) -> None:
        s = run.setup
        fold_target_scaling(s.handle.model)  # regression: the saved model predicts in target units
        save_model_atomically(s.handle, model_owner(s.methods), s.labels, run.run_dir / MODEL)


class Evaluate(Stage):
    name = "evaluate"

    def run(self, run: Run) -> None:
        run.test = run.task.write_test_outputs(run.setup, run.recipe, run.run_dir)
        run.trainer.sink.log("eval", run.state.step, {"split": "test", **scalar_metrics(run.test)})
