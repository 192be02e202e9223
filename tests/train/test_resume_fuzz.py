"""Kill-and-resume fuzz test (#15): a real `tailor train` process is killed with SIGKILL at
random steps, ten times, and resumed each time; then its newest checkpoint is damaged once.
The finished run must hold bit-identical weights to an uninterrupted one.

Slow (a dozen processes, each loading torch): `pytest -m slow tests/train/test_resume_fuzz.py`.
The seed is printed; rerun a failure with TAILOR_FUZZ_SEED=<seed>.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tailorkit import api
from tailorkit.recipe import recipe_from_dict
from tailorkit.train.checkpoint import MANIFEST, candidates

KILLS = 10
EPOCHS = 7  # 9 steps an epoch on the tiny data: 63 steps; ten kills use at most 12 + 9 * 4
CHECKPOINT_STEPS = 4
TRAIN = [sys.executable, "-m", "tailorkit.cli", "train"]


def _train_steps(metrics: Path) -> list[int]:
    """Steps of the training records so far; a line torn by the kill is skipped."""
    if not metrics.exists():
        return []
    steps = []
    for line in metrics.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("kind") == "train":
            steps.append(record["step"])
    return steps


def _kill_at(cmd: list[str], metrics: Path, step: int, timeout: float = 120) -> int:
    """Start `cmd`, SIGKILL it once metrics.jsonl records training step `step`; returns the
    last step it recorded. Fails if the process ends first."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while step not in _train_steps(metrics):
            assert proc.poll() is None, f"the run ended before step {step}: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, f"step {step} not reached in {timeout} s"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()  # no-op once killed; never leave a process behind on failure
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return max(_train_steps(metrics))


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def _assert_bit_identical(run: Path, reference: Path, seed: int) -> None:
    got, want = _weights(run), _weights(reference)
    assert got.keys() == want.keys()
    differ = [name for name in want if not torch.equal(got[name], want[name])]
    assert not differ, f"seed {seed}: weights differ from the uninterrupted run: {differ[:5]}"
    losses = [{(r["step"], r["loss"]) for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())
               if r["kind"] == "train"} for d in (run, reference)]
    assert losses[0] == losses[1], f"seed {seed}: the training losses differ"


@pytest.mark.slow
def test_sigkill_at_random_steps_then_resume_is_bit_identical(tiny_recipe, tmp_path):
    seed = int(os.environ.get("TAILOR_FUZZ_SEED", random.randrange(2**32)))
    print(f"kill-and-resume fuzz seed: {seed} (rerun with TAILOR_FUZZ_SEED={seed})")
    rng = random.Random(seed)
    run = tmp_path / "killed"
    recipe = {**tiny_recipe, "output_dir": str(run),
              "methods": [{"freeze": {"top": 1}}, {"layerwise_lr": {"decay": 0.5}}]}
    recipe["train"] = {**recipe["train"], "epochs": EPOCHS, "checkpoint_steps": CHECKPOINT_STEPS}
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe))
    reference = api.train(recipe_from_dict({**recipe, "output_dir": str(tmp_path / "whole")}))
    total = json.loads((reference / "summary.json").read_text())["steps"]
    metrics = run / "metrics.jsonl"

    # Before the first checkpoint there is nothing to resume from (the run says so and asks for
    # --overwrite): the first kill comes after it.
    last = _kill_at([*TRAIN, str(recipe_file)], metrics, rng.randint(CHECKPOINT_STEPS + 1, 12))
    kills = [last]
    while len(kills) < KILLS:
        step = last + rng.randint(1, 4)  # a step the resumed process has not recorded yet
        assert step < total, f"seed {seed}: out of steps after {len(kills)} kills"
        last = _kill_at([*TRAIN, "--resume", str(run)], metrics, step)
        kills.append(last)

    # Damage the newest checkpoint: the resume warns and goes on from the one before it.
    newest, previous = candidates(run)[:2]
    assert (previous / MANIFEST).is_file()
    target = newest / "model.safetensors"
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    done = subprocess.run([*TRAIN, "--resume", str(run)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"seed {seed}: {done.stderr[-2000:]}"
    assert f"{newest} is damaged" in done.stderr and "Traceback" not in done.stderr
    print(f"killed after steps {kills} of {total}; resumed from {previous.name} past a damaged {newest.name}")

    _assert_bit_identical(run, reference, seed)
    steps = _train_steps(metrics)
    assert steps == list(range(1, total + 1)), f"seed {seed}: each step logged exactly once"
    assert json.loads((run / "summary.json").read_text())["resumed"] is True
