"""Trials that really train (the tiny BERT, a few steps each): the evaluation hook, pruning,
the best recipe, two worker processes on one SQLite study, cross-validation, the report."""

from __future__ import annotations

import gc
import itertools
import json
import os
import weakref
from pathlib import Path

import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from tailorkit import api
from tailorkit.pipeline import assemble
from tailorkit.recipe import load_recipe, recipe_from_dict
from tailorkit.search import study as study_mod

STEPS = 12


@pytest.fixture
def trial_recipe(tiny_recipe, tmp_path):
    """The tiny recipe for STEPS steps, evaluated every 3, with a search block."""
    def make(name: str = "study", **search) -> dict:
        train = {**tiny_recipe["train"], "max_steps": STEPS, "eval_steps": 3}
        return {**tiny_recipe, "train": train, "output_dir": str(tmp_path / name),
                "search": {"metric": "loss", **search}}
    return make


def frozen(raw: dict, states=None):
    recipe = recipe_from_dict(raw)
    study = study_mod.open_study(recipe, Path(recipe.output_dir))
    return study.get_trials(deepcopy=False, states=states)


def test_on_evaluate_sees_every_validation_and_can_stop_the_run(tiny_recipe):
    seen = []

    class Stop(Exception):
        pass

    def hook(step, metrics):
        seen.append((step, metrics["loss"]))
        if len(seen) == 2:
            raise Stop

    raw = {**tiny_recipe, "train": {**tiny_recipe["train"], "max_steps": STEPS, "eval_steps": 3}}
    with pytest.raises(Stop):
        api.train(recipe_from_dict(raw), on_evaluate=hook)
    assert [s for s, _ in seen] == [3, 6]
    records = [json.loads(line) for line in (Path(raw["output_dir"]) / "metrics.jsonl").open()]
    assert max(r["step"] for r in records if r["kind"] == "train") == 6  # stopped there
    evals = [r["loss"] for r in records if r["kind"] == "eval"]
    assert evals == [loss for _, loss in seen]


def test_a_ctrl_c_that_a_library_swallows_still_stops_the_study(trial_recipe, monkeypatch):
    """A KeyboardInterrupt raised inside a callback that swallows it (SQLAlchemy's garbage-collection
    hooks do) used to let the whole study run on and exit 0; the worker remembers the signal."""
    import contextlib
    import signal

    from tailorkit.search import worker

    started = []
    real = worker.run_trial

    def swallowing(trial, *args, **kwargs):
        started.append(trial.number)
        if len(started) == 1:
            with contextlib.suppress(KeyboardInterrupt):  # as an "Exception ignored in ..." callback does
                os.kill(os.getpid(), signal.SIGINT)  # the handler runs before kill returns
        return real(trial, *args, **kwargs)

    monkeypatch.setattr(worker, "run_trial", swallowing)
    raw = trial_recipe(space={"train.lr": [1e-3, 2e-3, 3e-3]}, sampler="grid")
    with pytest.raises(worker.StudyInterrupted):
        api.tune(recipe_from_dict(raw))
    assert started == [0]  # the trial under way finished; no other started
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_pruner_really_stops_a_trial_and_frees_it(trial_recipe, monkeypatch):
    models = []
    make = assemble.make_trainer

    def watched(s, recipe, run_dir):
        models.append(weakref.ref(s.handle.model))
        return make(s, recipe, run_dir)

    monkeypatch.setattr(assemble, "make_trainer", watched)
    # One learning rate that learns, three that barely move: successive halving keeps only
    # a trial that beats the others at its rung, so the slow ones stop at an early step.
    raw = trial_recipe(space={"train.lr": [2e-2, 1e-6, 2e-6, 3e-6]}, sampler="grid", pruner="asha",
                       pruning={"min_resource": 3, "reduction_factor": 2})
    study_dir = api.tune(recipe_from_dict(raw))
    trials = frozen(raw)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "no trial was pruned"
    assert min(t.user_attrs["steps"] for t in pruned) < STEPS, "no trial stopped early"
    for t in pruned:  # ASHA may also prune at the last evaluation, step STEPS
        run = study_dir / t.user_attrs["run_dir"]
        records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        assert max(r["step"] for r in records if r["kind"] == "train") == t.user_attrs["steps"]
        assert not (run / "summary.json").exists() and not (run / "checkpoint").exists()
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs["steps"] == STEPS
    gc.collect()
    assert len(models) == 4 and all(ref() is None for ref in models), "a trial's model is still alive"
    table = pd.read_csv(study_dir / "trials.csv")
    assert (table.state == "pruned").sum() == len(pruned)
    assert table.steps.sum() == json.loads((study_dir / "study.json").read_text())["total_steps"]


def test_the_best_recipe_reproduces_the_best_trial(trial_recipe):
    raw = trial_recipe(space={"train.lr": {"low": 1e-3, "high": 3e-2, "log": True}},
                       sampler="random", n_trials=3)
    study_dir = api.tune(recipe_from_dict(raw))
    complete = frozen(raw, states=(TrialState.COMPLETE,))
    best = min(complete, key=lambda t: t.value)
    assert len({t.value for t in complete}) == 3  # the trials differ, so "best" means something
    path = study_dir / "best_recipe.yaml"
    text = path.read_text()
    assert text.startswith(f"# tailor train {path}\n")
    assert "search" not in yaml.safe_load(text)
    recipe = load_recipe(path)
    assert recipe.output_dir == str(study_dir / "best") and recipe.train.lr == best.params["train.lr"]
    summary = json.loads((api.train(recipe) / "summary.json").read_text())
    assert summary["validation"]["loss"] == pytest.approx(best.value, abs=1e-6)
    summary_of_trial = json.loads((study_dir / best.user_attrs["run_dir"] / "summary.json").read_text())
    assert summary["test"]["loss"] == pytest.approx(summary_of_trial["test"]["loss"], abs=1e-6)


def test_two_worker_processes_share_one_sqlite_study(trial_recipe, worker_barrier):
    ready = worker_barrier(2)
    space = {"train.lr": [1e-3, 3e-3, 1e-2, 3e-2], "train.batch_size": [4, 8]}
    raw = trial_recipe(space=space, sampler="grid")
    raw["train"] = {k: v for k, v in raw["train"].items() if k != "threads"}  # workers share the cores
    study_dir = api.tune(recipe_from_dict(raw), workers=2)
    trials = frozen(raw)
    assert [t.number for t in trials] == list(range(8))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    points = sorted((t.params["train.lr"], t.params["train.batch_size"]) for t in trials)
    assert points == sorted(itertools.product(*space.values()))  # none lost, none twice
    pids = {t.user_attrs["worker"]["pid"] for t in trials}
    assert len(pids) == 2 and os.getpid() not in pids
    assert len(list(ready.iterdir())) == 2  # both waited for the other before their first trial
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    for t in trials:
        run = study_dir / t.user_attrs["run_dir"]
        assert json.loads((run / "summary.json").read_text())["steps"] == STEPS
        saved = load_recipe(run / "recipe.yaml")
        assert saved.train.threads == threads and not saved.train.progress
        assert saved.train.batch_size == t.params["train.batch_size"]
    assert load_recipe(study_dir / "best_recipe.yaml").train.threads == threads


def test_cross_validation_runs_k_folds_per_trial(trial_recipe):
    raw = trial_recipe(space={"train.lr": [1e-2]}, sampler="grid", cv_folds=3)
    study_dir = api.tune(recipe_from_dict(raw))
    (trial,) = frozen(raw)
    run = study_dir / trial.user_attrs["run_dir"]
    summaries = [json.loads((run / f"fold-{i}" / "summary.json").read_text()) for i in range(3)]
    values = [s["validation"]["loss"] for s in summaries]
    assert trial.value == pytest.approx(sum(values) / 3)
    assert trial.user_attrs["fold_values"] == pytest.approx(values)
    assert trial.user_attrs["std"] == pytest.approx(pd.Series(values).std(ddof=0))
    assert trial.user_attrs["steps"] == 3 * STEPS
    # the validation folds partition train + validation of the recipe's split (72 + 24 of 120 rows)
    folds = [pd.read_parquet(study_dir / "folds" / f"fold-{i}" / "validation.parquet") for i in range(3)]
    texts = [t for f in folds for t in f.text]
    assert len(texts) == 96 and [len(f) for f in folds] == [32, 32, 32]
    trains = [pd.read_parquet(study_dir / "folds" / f"fold-{i}" / "train.parquet") for i in range(3)]
    assert all(not set(t.text) & set(v.text) for t, v in zip(trains, folds, strict=True))
    assert {s["data"]["test"] for s in summaries} == {24}  # the recipe's test split, every fold
    assert "loss_std" in pd.read_csv(study_dir / "trials.csv").columns


def test_the_report_files(trial_recipe):
    raw = trial_recipe(space={"train.lr": {"low": 1e-3, "high": 3e-2, "log": True},
                              "train.weight_decay": [0.0, 0.1]},
                       sampler="random", n_trials=4, pruner="median",
                       pruning={"startup_trials": 2})
    study_dir = api.tune(recipe_from_dict(raw))
    table = pd.read_csv(study_dir / "trials.csv")
    assert list(table.columns[:6]) == ["number", "state", "loss", "steps", "seconds", "train.lr"]
    assert len(table) == 4 and set(table.state) <= {"complete", "pruned"}
    summary = json.loads((study_dir / "study.json").read_text())
    counted = 0
    for t in frozen(raw):
        run = study_dir / t.user_attrs["run_dir"]
        records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
        counted += max(r["step"] for r in records if r["kind"] == "train")
    assert summary["total_steps"] == counted == table.steps.sum()
    complete = table[table.state == "complete"]
    assert summary["best"]["number"] == int(complete.loc[complete.loss.idxmin(), "number"])
    importances = json.loads((study_dir / "importances.json").read_text())
    assert set(importances) in ({"train.lr", "train.weight_decay"}, {"note"})
    for name in ("history.png", "parallel_coordinate.png", "slice.png", "learning_curves.png"):
        assert (study_dir / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = (study_dir / "report.md").read_text()
    assert "![history.png](plots/history.png)" in page and "Best: trial" in page
