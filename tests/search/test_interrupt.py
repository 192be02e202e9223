"""A real `kill` of `tailor tune --workers 2`: the workers stop their trials cleanly, the study
exits 130, and the same command finishes the grid with every point once."""

from __future__ import annotations

import itertools
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from tailorkit import api
from tailorkit.recipe import recipe_from_dict
from tailorkit.search import study as study_mod


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])  # SIGINT to this process alone: passed on
def test_kill_stops_the_workers_and_the_same_command_resumes(tiny_recipe, tmp_path, sig):
    space = {"train.lr": [1e-3, 3e-3], "train.batch_size": [4, 8]}
    raw = {**tiny_recipe, "train": {**tiny_recipe["train"], "max_steps": 300, "eval_steps": 5},
           "output_dir": str(tmp_path / "study"),
           "search": {"space": space, "sampler": "grid", "metric": "loss"}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.Popen([sys.executable, "-m", "tailorkit", "tune", str(path), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    recipe = recipe_from_dict(raw)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:  # both workers inside a training
        db = Path(raw["output_dir"]) / "study.db"
        if db.exists():
            running = study_mod.open_study(recipe, Path(raw["output_dir"])).get_trials(
                deepcopy=False, states=(TrialState.RUNNING,))
            if len(running) == 2 and all(t.intermediate_values for t in running):
                break
        time.sleep(0.5)
    assert proc.poll() is None, "the study ended before it could be stopped"
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, err
    assert f"resume with: tailor tune {path} --workers 2" in err and "Traceback" not in err
    trials = study_mod.open_study(recipe, Path(raw["output_dir"])).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    assert all(t.user_attrs["error"] == "interrupted" for t in trials)
    assert all(t.user_attrs["steps"] >= 5 for t in trials)  # each had an evaluation (none was recorded)

    study_dir = api.tune(recipe)  # the same recipe: lost trials run again, each point once
    done = study_mod.open_study(recipe, study_dir).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    points = sorted((t.params["train.lr"], t.params["train.batch_size"]) for t in done)
    assert points == sorted(itertools.product(*space.values()))


@pytest.mark.parametrize("stop", ["StudyInterrupted", "KeyboardInterrupt"])
def test_the_resume_hint_repeats_the_command_s_options(tiny_recipe, tmp_path, monkeypatch, capsys, stop):
    """Run as printed, the hint must reopen the same study: same --set options, same workers. A
    KeyboardInterrupt reaches the command when Ctrl-C comes while the report is written."""
    from tailorkit.cli import main
    from tailorkit.search.worker import StudyInterrupted

    raw = {**tiny_recipe, "search": {"space": {"train.lr": [1e-3, 3e-3]}, "sampler": "grid"}}
    path = tmp_path / "my recipe.yaml"
    path.write_text(yaml.safe_dump(raw))

    def interrupted(recipe, workers):
        raise {"StudyInterrupted": StudyInterrupted, "KeyboardInterrupt": KeyboardInterrupt}[stop]

    monkeypatch.setattr(api, "tune", interrupted)
    argv = ["tune", str(path), "--set", "output_dir=runs/my study", "--set", "search.n_trials=3"]
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 130
    hint = capsys.readouterr().err.split("resume with: ")[1].strip()
    assert shlex.split(hint) == ["tailor", *argv]
