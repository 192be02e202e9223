"""A resumed run must end exactly where the uninterrupted run ends: same data order,
same dropout masks (RNG state), same optimiser and schedule state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tailorkit import api, cli
from tailorkit.recipe import recipe_from_dict
from tailorkit.train.loop import Trainer

TOLERANCE = 1e-6  # same ops, same order, same threads: differences are float noise at most


class Crash(Exception):
    """Stands in for kill -9: the process dies between checkpoints."""


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    model = run_dir / "model"
    adapter = model / "adapter_model.safetensors"  # adapter runs save only what they train
    return load_file(str(adapter if adapter.exists() else model / "model.safetensors"))


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    worst = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    assert worst <= TOLERANCE, f"resumed weights differ by {worst}"


PARTIAL = [{"freeze": {"top": 1}}, {"layerwise_lr": {"decay": 0.5}}]


def _recipe(base: dict, out: Path, methods: list = PARTIAL, **train) -> dict:
    recipe = {**base, "output_dir": str(out), "methods": methods}
    recipe["train"] = {**base["train"], "checkpoint_steps": 4, "epochs": 3, **train}
    return recipe


@pytest.mark.parametrize(("crash_at_step", "methods"), [
    (6, PARTIAL), (9, PARTIAL),
    (6, [{"lora": {"r": 4, "dropout": 0.3}}]),  # dropout: the RNG state must resume too
    (9, [{"bottleneck": {"placement": "houlsby"}}]),
], ids=["partial-6", "partial-9", "lora-6", "houlsby-9"])
def test_crash_then_resume_matches_uninterrupted(tiny_recipe, tmp_path, monkeypatch, crash_at_step,
                                                 methods):
    full = api.train(recipe_from_dict(_recipe(tiny_recipe, tmp_path / "full", methods)))

    original_step = Trainer._step

    def crashing_step(self, group, trainable):
        if self.state.step + 1 == crash_at_step:
            raise Crash
        return original_step(self, group, trainable)

    monkeypatch.setattr(Trainer, "_step", crashing_step)
    crashed = tmp_path / "crashed"
    with pytest.raises(Crash):
        api.train(recipe_from_dict(_recipe(tiny_recipe, crashed, methods)))
    assert (crashed / "checkpoint" / "state.json").is_file()
    assert not (crashed / "summary.json").exists()

    monkeypatch.setattr(Trainer, "_step", original_step)
    api.resume(crashed)
    _assert_same_weights(full, crashed)
    steps = [json.loads(line)["step"] for line in (crashed / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps == list(range(1, steps[-1] + 1)), "each step logged exactly once"
    assert json.loads((crashed / "summary.json").read_text())["resumed"] is True
    assert not (crashed / "checkpoint").exists()


def test_resume_refuses_finished_and_unknown_runs(tiny_recipe, tmp_path):
    from tailorkit.errors import TailorError

    run = api.train(recipe_from_dict(_recipe(tiny_recipe, tmp_path / "done", epochs=1)))
    with pytest.raises(TailorError, match="already finished"):
        api.resume(run)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TailorError, match="no checkpoint"):
        api.resume(tmp_path / "empty")


SIGNAL_AT = 13  # mid-epoch: 9 steps an epoch on the tiny data, so the 4th step of the second epoch


@pytest.mark.parametrize("methods", [PARTIAL, [{"lora": {"r": 4, "dropout": 0.3}}]],
                         ids=["partial", "lora-dropout"])
def test_sigint_at_a_known_step_checkpoints_exits_130_and_resumes_exactly(tiny_recipe, tmp_path,
                                                                           monkeypatch, capsys, methods):
    """A real SIGINT, raised in this process while step SIGNAL_AT trains (as Ctrl-C arrives in the
    middle of a step), goes through the Trainer's own handler: the step finishes, a checkpoint is
    written at that step (not at a checkpoint_steps boundary) and `tailor train` exits 130; the
    resumed run ends exactly where the uninterrupted one does."""
    recipe = _recipe(tiny_recipe, tmp_path / "interrupted", methods, checkpoint_steps=1000)
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe))
    full = api.train(recipe_from_dict({**recipe, "output_dir": str(tmp_path / "full")}))
    steps_per_epoch = json.loads((full / "summary.json").read_text())["steps"] // 3
    epoch, batch = divmod(SIGNAL_AT, steps_per_epoch)
    assert batch > 0 and epoch < 3, "the signal must come mid-epoch, away from a checkpoint"

    original_step, outside = Trainer._step, signal.getsignal(signal.SIGINT)

    def ctrl_c_during_step(self, group, trainable):
        if self.state.step + 1 == SIGNAL_AT:
            assert signal.getsignal(signal.SIGINT) is not outside, "training installed no SIGINT handler"
            signal.raise_signal(signal.SIGINT)  # its handler runs before this returns
        return original_step(self, group, trainable)

    monkeypatch.setattr(Trainer, "_step", ctrl_c_during_step)
    run = tmp_path / "interrupted"
    with pytest.raises(SystemExit) as stopped:
        cli.main(["train", str(recipe_file)])
    err = capsys.readouterr().err
    assert stopped.value.code == 130, err
    assert f"tailor train --resume {run}" in err and "Traceback" not in err
    assert signal.getsignal(signal.SIGINT) is outside  # the handler is put back
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert (state["step"], state["epoch"], state["batch"]) == (SIGNAL_AT, epoch, batch)
    assert not (run / "summary.json").exists()

    monkeypatch.setattr(Trainer, "_step", original_step)
    assert cli.main(["train", "--resume", str(run)]) == 0
    _assert_same_weights(full, run)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps == list(range(1, 3 * steps_per_epoch + 1)), "each step logged exactly once"


@pytest.mark.slow
def test_ctrl_c_through_cli_then_resume(tiny_recipe, tmp_path):
    """A real SIGINT to a real `tailor train` process, at whatever step it has reached: it
    checkpoints, exits 130 and resumes exactly. Slow (15 epochs, twice) and timing-dependent;
    the test above covers the same path at a known step."""
    long_run = _recipe(tiny_recipe, tmp_path / "interrupted", epochs=15, checkpoint_steps=1000)
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(long_run))
    tailor = [sys.executable, "-m", "tailorkit"]
    proc = subprocess.Popen([*tailor, "train", str(recipe_file)], stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "interrupted" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 30:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err

    resumed = subprocess.run([*tailor, "train", "--resume", str(tmp_path / "interrupted")],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    full = api.train(recipe_from_dict({**long_run, "output_dir": str(tmp_path / "full")}))
    _assert_same_weights(full, tmp_path / "interrupted")
