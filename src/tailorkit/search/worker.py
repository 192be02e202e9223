"""The worker loop: count and ask under the study lock, train outside it, tell the outcome.

Each worker is a process with its own model in memory; `--workers N` spawns N of them on
one storage, and the storage is all they share. A trial counts toward n_trials once it
is complete, pruned or running; a trial lost to a kill or Ctrl-C does not, so a re-run
runs its budget again (with grid, the same grid point).
"""

from __future__ import annotations

import gc
import itertools
import math
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

from tailorkit.config.search import COSTS
from tailorkit.config.space import grid_values
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict
from tailorkit.runtime import stops_passed_on
from tailorkit.search.objective import run_trial
from tailorkit.search.space import distributions, suggest_conditional
from tailorkit.search.study import (
    fail_dead_trials,
    make_sampler,
    open_study,
    study_lock,
    trial_seed,
    worker_id,
)
from tailorkit.train.loop import Interrupted

_STOP_SEEN = [False]  # this worker got SIGINT or SIGTERM (see _stop)


class StudyInterrupted(Exception):
    """Ctrl-C or SIGTERM: the running trials were marked failed; a re-run resumes."""


def counts_toward_budget(trial) -> bool:
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING):
        return True
    return trial.state == TrialState.FAIL and trial.user_attrs.get("final", False)


def grid_size(cfg) -> int | None:
    return math.prod(len(v) for v in grid_values(cfg).values()) if cfg.sampler == "grid" else None


def run_workers(recipe, study_dir: Path, workers: int, deadline: float | None) -> None:
    """Run the study to its end with `workers` processes (one: in this process)."""
    if workers == 1:
        run_worker(recipe, study_dir, 0, None, None, deadline)
        return
    cores = len(os.sched_getaffinity(0))
    threads = max(1, cores // workers)  # unless the recipe sets train.threads itself
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch state
    raw = recipe.model_dump(mode="json")
    procs = [context.Process(target=_worker_main, name=f"tailor-tune-worker-{i}",
                             args=(raw, str(study_dir), i, threads, deadline)) for i in range(workers)]
    for proc in procs:
        proc.start()
    # `kill PID` (or a SIGINT not from the terminal) of this process reaches only this process:
    # pass it on as SIGTERM, so each worker stops its trial cleanly as Ctrl-C would. Then wait
    # while they record their trials.
    with stops_passed_on(lambda: [proc.terminate() for proc in procs if proc.is_alive()]) as stopped:
        for proc in procs:
            proc.join()
    codes = [proc.exitcode for proc in procs]
    if stopped or any(code in (130, -signal.SIGTERM, -signal.SIGINT) for code in codes):
        raise StudyInterrupted
    failed = [i for i, code in enumerate(codes) if code != 0]
    if failed:
        raise TailorError(f"worker {', '.join(map(str, failed))} stopped with an error (see above); "
                          "fix it and re-run the same command to resume the study")


def _worker_main(raw: dict, study_dir: str, index: int, threads: int, deadline: float | None) -> None:
    try:
        run_worker(recipe_from_dict(raw), Path(study_dir), index, threads, False, deadline)
    except (StudyInterrupted, KeyboardInterrupt):
        sys.exit(130)
    except TailorError as err:
        print(f"error: worker {index}: {err}", file=sys.stderr)
        sys.exit(2)


def run_worker(recipe, study_dir: Path, index: int, threads: int | None, progress: bool | None,
               deadline: float | None) -> int:
    """Ask, train and tell until the study has its trials (or the deadline passes); returns
    how many trials this worker ran."""
    _STOP_SEEN[0] = False
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _work(recipe, study_dir, index, threads, progress, deadline)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop(signum, frame) -> None:
    """Ctrl-C or `kill` between two trainings (the Trainer handles them inside one): the trial is
    marked failed rather than left running. The exception can land in a callback that swallows
    it (SQLAlchemy's garbage-collection hooks print "Exception ignored"), so the signal is also
    remembered, and the worker stops before its next trial."""
    _STOP_SEEN[0] = True
    raise KeyboardInterrupt


def _work(recipe, study_dir: Path, index: int, threads: int | None, progress: bool | None,
          deadline: float | None) -> int:
    from optuna.distributions import CategoricalDistribution

    cfg = recipe.search
    study = open_study(recipe, study_dir)
    grid = grid_values(cfg) if cfg.sampler == "grid" else None
    if grid is not None:  # the grid is a set of points: each parameter is one of its values
        study.sampler = make_sampler(cfg, grid, cfg.seed)
        dists = {path: CategoricalDistribution(values) for path, values in grid.items()}
    else:
        dists = distributions(cfg)
    wanted = cfg.trials_wanted(grid_size(cfg))
    me, ran = worker_id(), 0
    while deadline is None or time.time() < deadline:
        if _STOP_SEEN[0]:  # a Ctrl-C some library swallowed
            print("interrupted; re-run the same command to resume the study")
            raise StudyInterrupted
        with study_lock(study_dir):
            lost = fail_dead_trials(study)
            trial = _next_trial(study, cfg, grid, dists, wanted)
            if trial is not None:
                trial.set_user_attr("worker", {**me, "index": index})
        for number in lost:
            print(f"trial {number}: its worker died; marked failed, its budget runs again")
        if trial is None:
            break
        _run_one(study, trial, recipe, study_dir, threads, progress)
        ran += 1
    return ran


def _next_trial(study, cfg, grid: dict[str, list] | None, dists: dict, wanted: int):
    """The next trial, or None when the study has what it wants. Call under the lock."""
    trials = study.get_trials(deepcopy=False)
    live = [t for t in trials if counts_toward_budget(t)]
    if len(live) >= wanted:
        return None
    if grid is not None:
        covered = {tuple(t.params.get(path) for path in grid) for t in live}
        missing = [p for p in itertools.product(*grid.values()) if p not in covered]
        if not missing:
            return None
        # Optuna's grid gives trial n its n-th point; past the grid's size (a lost trial ran
        # again) name the point that is still missing.
        if len(trials) >= math.prod(len(v) for v in grid.values()):
            study.enqueue_trial(dict(zip(grid, missing[0], strict=True)))
    else:
        study.sampler = make_sampler(cfg, None, trial_seed(cfg, len(trials)))
    trial = study.ask(dists)
    suggest_conditional(trial, cfg)
    return trial


def _run_one(study, trial, recipe, study_dir: Path, threads: int | None, progress: bool | None) -> None:
    import optuna
    from optuna.trial import TrialState


    started = time.perf_counter()
    values, state = None, TrialState.COMPLETE
    twin = _finished_twin(study, trial)
    try:
        if twin is not None:  # same values, same seed: training again would give the same run
            trial.set_user_attr("duplicate_of", twin.number)
            for key in ("steps", "run_dir", "std", "fold_values", "threads"):
                if key in twin.user_attrs:
                    trial.set_user_attr(key, 0 if key == "steps" else twin.user_attrs[key])
            values = list(twin.values)
        else:
            values = run_trial(trial, recipe, study_dir, threads, progress)
    except optuna.TrialPruned:
        state = TrialState.PRUNED
    except (Interrupted, KeyboardInterrupt):
        trial.set_user_attr("error", "interrupted")
        study.tell(trial, state=TrialState.FAIL)
        print(f"trial {trial.number}: interrupted; re-run the same command to resume the study")
        raise StudyInterrupted from None
    except Exception as err:
        message = str(err) if isinstance(err, TailorError) else f"{type(err).__name__}: {err}"
        trial.set_user_attr("error", message)
        study.tell(trial, state=TrialState.FAIL)
        raise TailorError(f"trial {trial.number} ({_params(trial.params)}): {message}") from err
    names = recipe.search.objective_names()
    bad = [f"{n} is {v}" for n, v in zip(names, values or [], strict=False) if not math.isfinite(v)]
    if bad:  # a diverged run is a result, not a crash
        trial.set_user_attr("error", "; ".join(bad))
        trial.set_user_attr("final", True)
        state = TrialState.FAIL
    study.tell(trial, values if state == TrialState.COMPLETE else None, state=state)
    if twin is None:
        free_memory()
    seconds = time.perf_counter() - started
    metric = recipe.search.metric
    shown = (", ".join(f"{n}={show_value(n, v)}" for n, v in zip(names, values, strict=True))
             if state == TrialState.COMPLETE else
             f"pruned, last {metric}={_last(trial):.4f}" if state == TrialState.PRUNED else "failed")
    again = f" (as trial {twin.number}: same values, not trained again)" if twin is not None else ""
    print(f"trial {trial.number}: {shown} after {trial.user_attrs.get('steps', 0)} steps, "
          f"{seconds:.1f} s  ({_params(trial.params)}){again}", flush=True)


def free_memory() -> None:
    """The trial's model, optimiser and data go now, before the next trial loads its own,
    not at some later collection (a pruned run's frames hold them in reference cycles)."""
    gc.collect()


def _finished_twin(study, trial):
    """A complete trial with the same values (samplers may propose a point again, on a
    discrete space often): its result is reused and no step is spent."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.params == trial.params and "duplicate_of" not in t.user_attrs:
            return t
    return None


def _last(trial) -> float:
    frozen = trial.study._storage.get_trial(trial._trial_id)
    return frozen.intermediate_values[frozen.last_step] if frozen.last_step is not None else float("nan")


def _params(params: dict) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())


def show_value(name: str, value: float) -> str:
    """A metric to 4 decimals; a cost to 4 significant digits, a large one in full."""
    if name not in COSTS:
        return f"{value:.4f}"
    return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
