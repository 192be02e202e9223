"""Crashes and damage: a damaged checkpoint falls back to the previous one, a torn metrics line
is dropped, a run that diverges stops with a clear error, and a run stopped before training
leaves nothing behind."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tailorkit import api
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict
from tailorkit.track.jsonl import dumps
from tailorkit.train.checkpoint import MANIFEST, damage
from tailorkit.train.loop import Trainer


def _strict_json(path: Path):
    """Python's json accepts a bare NaN; a JSON file must not hold one."""
    return json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path} holds {c}"))


@pytest.fixture
def recipe(tiny_recipe) -> dict:
    return {**tiny_recipe, "train": {**tiny_recipe["train"], "checkpoint_steps": 2}}


def _weights(run: Path) -> dict:
    return load_file(str(run / "model" / "model.safetensors"))


@pytest.mark.parametrize("damaged", ["model.safetensors", "optimizer.pt", "state.json"])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one_and_ends_identical(
        damaged, recipe, crash_before, capsys):
    whole = api.train(recipe_from_dict(recipe))
    cut = Path(recipe["output_dir"] + "-cut")
    crash_before(7)  # checkpoints at steps 2, 4, 6
    with pytest.raises(KeyboardInterrupt):
        api.train(recipe_from_dict({**recipe, "output_dir": str(cut)}))
    crash_before(None)
    assert json.loads((cut / "checkpoint.old" / "state.json").read_text())["step"] == 4
    file = cut / "checkpoint" / damaged
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])  # a truncated copy
    assert damage(cut / "checkpoint") == f"{damaged} has {file.stat().st_size} bytes, not " \
        f"{json.loads((cut / 'checkpoint' / MANIFEST).read_text())[damaged]['bytes']}"

    api.resume(cut)
    err = capsys.readouterr().err
    assert f"{cut / 'checkpoint'} is damaged" in err and "resuming at step 4" in err
    a, b = _weights(whole), _weights(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any((cut / name).exists() for name in ("checkpoint", "checkpoint.old", "checkpoint.tmp"))


def test_no_usable_checkpoint_is_a_one_line_error(recipe, crash_before):
    cut = Path(recipe["output_dir"])
    crash_before(5)
    with pytest.raises(KeyboardInterrupt):
        api.train(recipe_from_dict(recipe))
    for name in ("checkpoint", "checkpoint.old"):
        (cut / name / "state.json").write_text('{"step": ')
    with pytest.raises(TailorError, match=r"no usable checkpoint \(checkpoint: state.json .*; "
                                          r"checkpoint.old: state.json .*\); start the run again"):
        api.resume(cut)


def test_a_torn_last_metrics_line_is_dropped_on_resume(recipe, crash_before, capsys):
    run = Path(recipe["output_dir"])
    crash_before(5)
    with pytest.raises(KeyboardInterrupt):
        api.train(recipe_from_dict(recipe))
    crash_before(None)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"kind": "train", "st')  # power cut in the middle of an append
    api.resume(run)
    assert "torn by a crash" in capsys.readouterr().err
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == _strict_json(run / "summary.json")["steps"]


def test_divergence_stops_at_its_step_and_keeps_the_last_finite_checkpoint(tiny_recipe):
    raw = {**tiny_recipe, "train": {**tiny_recipe["train"], "lr": 1e4, "max_grad_norm": None,
                                    "checkpoint_steps": 1, "optimizer": "sgd"}}
    with pytest.raises(TailorError, match=r"step \d+: the (loss|gradient norm) is (nan|inf).*training "
                                          r"diverged. Lower train.lr \(now 10000\), turn on clipping"):
        api.train(recipe_from_dict(raw))
    run = Path(raw["output_dir"])
    weights = load_file(str(run / "checkpoint" / "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint_and_says_how_to_go_on(recipe,
                                                                                           monkeypatch):
    saves, real_save = [], torch.save

    def save(obj, path, *args, **kwargs):  # what torch.save raised here when the disk filled up
        saves.append(path)
        if len(saves) == 2:
            raise RuntimeError("basic_ios::clear: iostream error")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    run = Path(recipe["output_dir"])
    expected = (rf"^{run}: could not write a checkpoint \(basic_ios::clear: iostream error; [\d,]+ MB free "
                rf"on that disk\); the last checkpoint .* is as it was; free space, then continue with "
                rf"tailor train --resume {run}$")
    with pytest.raises(TailorError, match=expected):
        api.train(recipe_from_dict(recipe))
    assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 2
    assert not (run / "checkpoint.tmp").exists()
    monkeypatch.setattr(torch, "save", real_save)
    assert json.loads((api.resume(run) / "summary.json").read_text())["resumed"] is True


def test_skip_batch_skips_a_nonfinite_update_and_says_so(tiny_recipe, monkeypatch):
    raw = {**tiny_recipe, "train": {**tiny_recipe["train"], "on_nonfinite": "skip_batch"}}
    original = Trainer._step

    def poisoned(self, group, trainable):
        if self.state.step == 2:  # the third update's gradients are NaN
            for p in trainable:
                p.grad = torch.full_like(p, math.nan)
        return original(self, group, trainable)

    monkeypatch.setattr(Trainer, "_step", poisoned)
    run = api.train(recipe_from_dict(raw))
    summary = _strict_json(run / "summary.json")
    assert summary["skipped_steps"] == 1
    assert all(torch.isfinite(t).all() for t in _weights(run).values())


def test_json_never_holds_nan():
    text = dumps({"a": [math.nan, 1.0], "b": {"c": math.inf}})
    assert json.loads(text) == {"a": [None, 1.0], "b": {"c": None}}


def test_a_run_stopped_before_training_leaves_nothing(tiny_recipe, monkeypatch):
    from tailorkit.tasks.text_table import TextTableTask

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the model loads

    monkeypatch.setattr(TextTableTask, "prepare", stopped)
    with pytest.raises(KeyboardInterrupt):
        api.train(recipe_from_dict(tiny_recipe))
    assert not Path(tiny_recipe["output_dir"]).exists()
    nested = Path(tiny_recipe["output_dir"]).parent / "runs" / "today" / "run"  # parents it made go too
    with pytest.raises(KeyboardInterrupt):
        api.train(recipe_from_dict({**tiny_recipe, "output_dir": str(nested)}))
    assert not nested.parent.parent.exists() and nested.parent.parent.parent.is_dir()
    monkeypatch.undo()
    assert (api.train(recipe_from_dict(tiny_recipe)) / "summary.json").is_file()  # not refused
