"""The run as stages: progress.json records each finished stage, and a run that stopped
after training resumes without training again."""

from __future__ import annotations

import json

import pytest
import yaml

from tailorkit import api
from tailorkit.pipeline import STAGES
from tailorkit.pipeline.run_dir import PROGRESS
from tailorkit.pipeline.stages import Evaluate, Stage
from tailorkit.recipe import recipe_from_dict
from tailorkit.train.loop import Trainer


def _train_steps(run) -> list[int]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    return [r["step"] for r in lines if r["kind"] == "train"]


def test_stage_order():
    assert [s.name for s in STAGES] == ["prepare", "train", "save", "evaluate", "compress"]


@pytest.mark.parametrize("methods", [["full"], [{"features": {"head": "logistic_regression"}}]],
                         ids=["full", "sklearn-head"])
def test_a_crash_after_training_resumes_at_the_stage_without_training_again(
        methods, tiny_recipe, tmp_path, monkeypatch):
    raw = {**tiny_recipe, "methods": methods, "train": {**tiny_recipe["train"], "max_steps": 5}}
    whole = api.train(recipe_from_dict({**raw, "output_dir": str(tmp_path / "whole")}))

    def crash(self, run):
        raise RuntimeError("power cut while scoring the test split")

    monkeypatch.setattr(Evaluate, "run", crash)
    crashed = tmp_path / "crashed"
    with pytest.raises(RuntimeError, match="power cut"):
        api.train(recipe_from_dict({**raw, "output_dir": str(crashed)}))
    assert json.loads((crashed / PROGRESS).read_text())["finished"] == ["prepare", "train", "save"]
    steps = _train_steps(crashed)
    monkeypatch.undo()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished training ran a step again")

    monkeypatch.setattr(Trainer, "_step", no_training)
    api.resume(crashed)
    assert _train_steps(crashed) == steps  # nothing trained, nothing logged twice
    done, ref = (json.loads((d / "summary.json").read_text()) for d in (crashed, whole))
    assert done["resumed"] is True and done["steps"] == ref["steps"]
    assert done["test"]["loss"] == pytest.approx(ref["test"]["loss"], abs=1e-6)
    assert done["test"]["accuracy"] == ref["test"]["accuracy"]
    assert not (crashed / PROGRESS).exists() and not (crashed / "checkpoint").exists()


def test_a_stage_runs_after_the_others_only_when_its_section_is_in_the_recipe(tiny_recipe, monkeypatch):
    """How compression and export plug in: one Stage subclass, appended to STAGES."""
    seen = []

    class Report(Stage):
        name = "report"
        section = "search"  # an optional section: a plain recipe has none

        def run(self, run):
            seen.append((run.test["accuracy"], (run.run_dir / "model").is_dir()))

    monkeypatch.setattr("tailorkit.pipeline.run.STAGES", [*STAGES, Report()])
    raw = {**tiny_recipe, "train": {**tiny_recipe["train"], "max_steps": 2}}
    api.train(recipe_from_dict(raw))
    assert seen == []
    search = {"space": {"train.lr": [1e-3, 2e-3]}, "sampler": "grid"}
    run = api.train(recipe_from_dict({**raw, "search": search}), overwrite=True)
    accuracy = json.loads((run / "summary.json").read_text())["test"]["accuracy"]
    assert seen == [(accuracy, True)]  # after evaluate, with the saved model


def test_the_threads_a_run_used_are_recorded_for_its_resume(tiny_recipe, monkeypatch):
    raw = {**tiny_recipe, "train": {k: v for k, v in tiny_recipe["train"].items() if k != "threads"}}
    monkeypatch.setattr("tailorkit.pipeline.run.default_threads", lambda: 1)
    run = api.train(recipe_from_dict(raw))
    assert yaml.safe_load((run / "recipe.yaml").read_text())["train"]["threads"] == 1


def test_the_console_tells_the_data_and_every_validation(tiny_recipe, capsys):
    raw = {**tiny_recipe, "train": {**tiny_recipe["train"], "progress": True}}
    run = api.train(recipe_from_dict(raw))
    err = capsys.readouterr().err
    assert "data: train 72  validation 24  test 24" in err and "classes (train): neg " in err
    evals = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    evals = [e for e in evals if e["kind"] == "eval" and e["split"] == "validation"]
    for e in evals:
        assert f"step {e['step']}: validation accuracy={e['accuracy']:.4f}" in err


def test_a_resume_refuses_data_that_changed_unless_allowed(tiny_recipe, crash_before):
    from pathlib import Path

    from conftest import make_sentences
    from tailorkit.errors import TailorError

    crash_before(4)
    with pytest.raises(KeyboardInterrupt):
        api.train(recipe_from_dict(tiny_recipe))
    crash_before(None)
    run = Path(tiny_recipe["output_dir"])
    make_sentences(120, seed=5).to_csv(tiny_recipe["data"]["train"], index=False)  # edited meanwhile
    with pytest.raises(TailorError, match=r"the train, validation, test data changed since the run "
                                          r"started.*--allow-data-change"):
        api.resume(run)
    assert (api.resume(run, allow_data_change=True) / "summary.json").is_file()


@pytest.mark.parametrize("methods", [["full"], [{"lora": {"r": 2}}]])
def test_the_saved_model_files_take_the_umask_s_mode(tiny_recipe, methods):
    """safetensors writes 0600 whatever the umask: the weights alone were unreadable to the
    others who could read the rest of a shared run folder."""
    import os

    old = os.umask(0o022)
    try:
        run = api.train(recipe_from_dict({**tiny_recipe, "methods": methods, "train": {**tiny_recipe["train"],
                                                                                     "max_steps": 1}}))
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (run / "model").iterdir()}
    assert any(name.endswith(".safetensors") for name in modes)
    assert set(modes.values()) == {0o644}, modes
