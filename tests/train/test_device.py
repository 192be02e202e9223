"""train.device and train.precision: what `auto` picks, a device that is not here refused with
the field's name, fp16 with its gradient scaler saved in checkpoints, and the deprecated
train.bf16 read as precision.

The machine these run on has no GPU: the CUDA paths are checked by bench/gpu_check.sh."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from tailorkit import api, cli
from tailorkit.device import autocast, peak_memory_mb, resolve
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict
from tailorkit.train.checkpoint import capture_rng, load_checkpoint, save_checkpoint
from tailorkit.train.loop import Trainer

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message where CUDA is absent")


def test_auto_picks_the_cpu_where_there_is_nothing_else():
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("this machine has an accelerator")
    assert resolve("auto") == torch.device("cpu")
    assert resolve("cpu") == torch.device("cpu")
    assert peak_memory_mb(torch.device("cpu")) == {"device": "cpu"}  # no CUDA figures to report


@NO_CUDA
@pytest.mark.parametrize("spec", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_refused_naming_the_field(spec):
    with pytest.raises(TailorError, match=rf"^train\.device: asks for {spec}, but torch .* sees no CUDA"):
        resolve(spec)
    assert resolve(spec, fallback=True) == resolve("auto")  # reading a finished GPU run back here


@NO_CUDA
def test_a_run_on_a_missing_device_stops_before_anything_is_written(tiny_recipe, write_recipe, capsys):
    recipe = {**tiny_recipe, "train": {**tiny_recipe["train"], "device": "cuda"}}
    recipe_file = write_recipe(recipe)
    assert cli.main(["train", str(recipe_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {recipe_file}: train.device: asks for cuda") and "\n" not in err
    assert not Path(recipe["output_dir"]).exists()


def test_autocast_follows_the_precision():
    layer, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
    for precision, dtype in [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16),
                             (True, torch.bfloat16), (False, torch.float32)]:
        with autocast(torch.device("cpu"), precision):
            assert layer(x).dtype == dtype, precision


def test_bf16_still_reads_as_precision_with_a_deprecation_warning(tiny_recipe):
    for bf16, precision in [(True, "bf16"), (False, "fp32")]:
        recipe = {**tiny_recipe, "train": {**tiny_recipe["train"], "bf16": bf16}}
        deprecated = rf"train\.bf16 is deprecated: write train\.precision: {precision}"
        with pytest.warns(FutureWarning, match=deprecated):
            train = recipe_from_dict(recipe).train
        assert train.precision == precision and train.bf16 == (bf16 is True)
    clash = {**tiny_recipe, "train": {**tiny_recipe["train"], "bf16": True, "precision": "fp16"}}
    with warnings.catch_warnings(), pytest.raises(TailorError, match="bf16: true and precision: fp16 disag"):
        warnings.simplefilter("ignore")
        recipe_from_dict(clash)


def test_the_deprecation_is_one_line_on_the_command_line(tiny_recipe, write_recipe):
    recipe = {**tiny_recipe, "train": {**tiny_recipe["train"], "bf16": True}}
    command = [sys.executable, "-m", "tailorkit.cli", "recipe", "validate", str(write_recipe(recipe))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith("warning: train.bf16 is deprecated: write train.precision: bf16 instead "
                                  "(read as that now)\n")
    assert "precision: bf16" in done.stdout


def test_the_gradient_scaler_state_round_trips_through_a_checkpoint(make_handle, tmp_path):
    handle = make_handle()
    optimizer = torch.optim.AdamW(handle.model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=3)
    scaler.load_state_dict({**scaler.state_dict(), "scale": 96.0, "_growth_tracker": 2})
    save_checkpoint(tmp_path, handle.model, optimizer, scheduler, {"step": 3}, capture_rng(), None, scaler)
    fresh = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=3)
    load_checkpoint(tmp_path, handle.model, optimizer, scheduler, fresh)
    assert fresh.state_dict() == scaler.state_dict()
    assert fresh.get_scale() == 96.0


def test_fp16_trains_on_the_cpu_and_resumes_exactly(tiny_recipe, crash_before, monkeypatch, tmp_path):
    """fp16 autocast runs on the CPU in torch 2.13 (slowly on most CPUs: bf16 is the CPU's
    format); the scaler's scale, halved on each overflow, comes back with the checkpoint."""
    recipe = {**tiny_recipe, "train": {**tiny_recipe["train"], "precision": "fp16", "checkpoint_steps": 4}}
    whole = api.train(recipe_from_dict({**recipe, "output_dir": str(tmp_path / "whole")}))
    summary = json.loads((whole / "summary.json").read_text())
    assert summary["precision"] == "fp16" and summary["device"] == "cpu"
    assert summary["peak_memory"] == {"device": "cpu"}
    assert all(v is not None for v in (summary["validation"]["loss"], summary["test"]["loss"]))

    scales = {}
    original = Trainer._checkpoint

    def record(self):
        original(self)
        scales[self.state.step] = self.scaler.get_scale()

    monkeypatch.setattr(Trainer, "_checkpoint", record)
    cut = tmp_path / "cut"
    crash_before(7)
    with pytest.raises(KeyboardInterrupt):
        api.train(recipe_from_dict({**recipe, "output_dir": str(cut)}))
    blob = torch.load(cut / "checkpoint" / "optimizer.pt", weights_only=True)
    assert blob["scaler"]["scale"] == scales[4]
    crash_before(None)
    api.resume(cut)
    from safetensors.torch import load_file

    a, b = (load_file(str(run / "model" / "model.safetensors")) for run in (whole, cut))
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


@NO_CUDA
def test_a_run_started_on_a_gpu_resumes_on_the_cpu(tiny_recipe, crash_before, tmp_path, capsys):
    """Stands in for a run started on a GPU machine: its recipe.yaml says cuda, its checkpoint
    (written from CPU copies, as on a GPU) holds no device."""
    import yaml

    recipe = {**tiny_recipe, "output_dir": str(tmp_path / "run")}
    crash_before(5)
    with pytest.raises(KeyboardInterrupt):
        api.train(recipe_from_dict(recipe))
    crash_before(None)
    saved = tmp_path / "run" / "recipe.yaml"
    recorded = yaml.safe_load(saved.read_text())
    recorded["train"]["device"] = "cuda"
    saved.write_text(yaml.safe_dump(recorded))
    api.resume(tmp_path / "run")
    warned = "the run trained on train.device: cuda, which is not here; resuming on cpu"
    assert warned in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["device"] == "cpu"
