"""Data-parallel training on 2 CPU processes (gloo), started by `tailor train --nproc 2`
through torchrun, for real: the same weights as one process on the whole batch, rank 0 alone
writing the run directory, and a run whose processes die resuming exactly.

Each launch starts two Python processes that import torch and transformers (about 10-20 s on
2 cores); the tiny model trains in well under a second, so the tests launch as few as they can.
"""

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

from conftest import VOCAB, build_tiny_tokenizer, recipe_dict
from tailorkit import api
from tailorkit.recipe import recipe_from_dict
from tailorkit.train import distributed

# 2 processes x 4 examples vs 1 x 8: the same sums, in another order and with other padding
# widths, so float noise only; SGD keeps it that size (Adam divides by tiny second moments
# and can turn noise in a near-zero gradient into a visible step).
SAME_WEIGHTS = 1e-5
EXACT = 1e-6  # a resumed run against the uninterrupted one: same ops, same order

# A stand-in for kill -9 of one worker, imported by every Python process the test starts
# (PYTHONPATH): rank CRASH_RANK dies just before optimiser step CRASH_STEP.
CRASH_HOOK = """
import os
if os.environ.get("CRASH_STEP") and os.environ.get("RANK") == os.environ.get("CRASH_RANK"):
    from tailorkit.train.loop import Trainer
    _original = Trainer._step

    def _step(self, group, trainable):
        if self.state.step + 1 == int(os.environ["CRASH_STEP"]):
            os._exit(9)
        return _original(self, group, trainable)

    Trainer._step = _step
"""


def _tailor(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "tailorkit.cli", *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})}, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"tailor {' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def _largest_difference(a: Path, b: Path) -> float:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    return max((wa[k] - wb[k]).abs().max().item() for k in wa)


def _write(recipe: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def bert_without_dropout(tmp_path_factory) -> Path:
    """The tiny BERT with every dropout off: one process and two then draw no random masks."""
    from transformers import BertConfig, BertForSequenceClassification

    directory = tmp_path_factory.mktemp("models") / "tiny-bert-no-dropout"
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(directory)
    build_tiny_tokenizer().save_pretrained(directory)
    return directory


def test_two_processes_on_half_batches_give_the_weights_of_one_process_on_whole_ones(
        bert_without_dropout, sentiment_csv, tmp_path):
    train = {"epochs": 1, "max_steps": 5, "batch_size": 8, "optimizer": "sgd", "lr": 0.1,
             "checkpoint_steps": 2}
    one = api.train(recipe_from_dict(recipe_dict(bert_without_dropout, sentiment_csv, tmp_path / "one",
                                                 **train)))
    recipe = _write(recipe_dict(bert_without_dropout, sentiment_csv, tmp_path / "two", **train),
                    tmp_path / "recipe.yaml")
    result = _tailor("train", str(recipe), "--nproc", "2")

    assert _largest_difference(one, tmp_path / "two") <= SAME_WEIGHTS
    # the log states how the batch is split
    assert "2 processes; effective batch 8 examples per step" in result.stderr
    assert "run: " in result.stdout
    # rank 0 alone wrote: one line per step, and nothing of the other process's in the folder
    two = tmp_path / "two"
    steps = [json.loads(line)["step"] for line in (two / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps == [1, 2, 3, 4, 5]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    summary = json.loads((two / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["effective_batch_size"] == 8
    assert summary["steps"] == 5


def test_accelerate_launch_starts_the_same_data_parallel_run(bert_without_dropout, sentiment_csv, tmp_path):
    """`accelerate launch -m tailorkit.cli train` as a user with Accelerate writes it: its
    launcher (torch.distributed.run underneath) sets the variables tailorkit joins by. On a
    machine without GPUs `--multi_gpu` still starts the processes, and tailorkit picks gloo."""
    train = {"epochs": 1, "max_steps": 3, "batch_size": 8, "optimizer": "sgd", "lr": 0.1}
    one = api.train(recipe_from_dict(recipe_dict(bert_without_dropout, sentiment_csv, tmp_path / "one",
                                                 **train)))
    recipe = _write(recipe_dict(bert_without_dropout, sentiment_csv, tmp_path / "two", **train),
                    tmp_path / "recipe.yaml")
    launched = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "--main_process_port", "0",  # a free port: 29500, the default, may be taken
         "-m", "tailorkit.cli", "train", str(recipe)],
        capture_output=True, text=True, timeout=300,
        # HF_HOME: no accelerate config file of the user's changes the launch
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HOME": str(tmp_path / "hf")})
    assert launched.returncode == 0, launched.stderr[-3000:]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["effective_batch_size"] == 8
    assert _largest_difference(one, tmp_path / "two") <= SAME_WEIGHTS


def test_a_two_process_run_whose_worker_dies_resumes_exactly(tiny_recipe, tmp_path):
    """With dropout on: each process's RNG state is in the checkpoint and comes back."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASH_HOOK)
    path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    recipe = {**tiny_recipe, "train": {**tiny_recipe["train"], "epochs": 2, "checkpoint_steps": 4}}

    whole = _write({**recipe, "output_dir": str(tmp_path / "whole")}, tmp_path / "whole.yaml")
    _tailor("train", str(whole), "--nproc", "2")

    cut = tmp_path / "cut"
    crashed = _tailor("train", str(_write({**recipe, "output_dir": str(cut)}, tmp_path / "cut.yaml")),
                      "--nproc", "2", env={"PYTHONPATH": path, "CRASH_STEP": "11", "CRASH_RANK": "1"},
                      check=False)
    assert crashed.returncode != 0
    state = json.loads((cut / "checkpoint" / "state.json").read_text())
    assert state["step"] == 9  # 9 steps an epoch: the checkpoint at the epoch's end
    assert len(state["python_rng_ranks"]) == 2
    assert not (cut / "summary.json").exists()

    _tailor("train", "--resume", str(cut), "--nproc", "2")
    assert _largest_difference(tmp_path / "whole", cut) <= EXACT
    steps = [json.loads(line)["step"] for line in (cut / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps == list(range(1, steps[-1] + 1)), "each step logged exactly once"


SLOW_HOOK = """
import os, time
if os.environ.get("SLOW_STEPS"):
    from tailorkit.train.loop import Trainer
    _original = Trainer._step

    def _step(self, group, trainable):
        time.sleep(0.3)
        return _original(self, group, trainable)

    Trainer._step = _step
"""


@pytest.mark.parametrize("how", ["kill the launcher", "Ctrl-C in the terminal"])
def test_a_stopped_two_process_run_checkpoints_exits_130_and_resumes(how, tiny_recipe, tmp_path):
    """`kill PID` reached only the launcher, and torchrun and the workers trained on to the end;
    a Ctrl-C ended with torchrun's traceback, status 1 and a resume hint without --nproc."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_HOOK)
    env = {**os.environ, "SLOW_STEPS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))}
    run = tmp_path / "run"
    recipe = _write({**tiny_recipe, "train": {**tiny_recipe["train"], "epochs": 3}, "output_dir": str(run)},
                    tmp_path / "r.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "tailorkit.cli", "train", str(recipe), "--nproc", "2"],
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    deadline = time.time() + 240
    while not ((run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text().strip()):
        assert time.time() < deadline and proc.poll() is None, "training did not start"
        time.sleep(0.2)
    if how == "kill the launcher":
        proc.send_signal(signal.SIGTERM)
    else:  # a terminal's Ctrl-C reaches the whole process group
        os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and f"continue with: tailor train --resume {run} --nproc 2" in err
    time.sleep(3)  # workers left running would train on and finish
    assert not (run / "summary.json").exists() and (run / "checkpoint" / "state.json").is_file()
    _tailor("train", "--resume", str(run), "--nproc", "2")
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "train"]
    assert steps == list(range(1, steps[-1] + 1)) and (run / "summary.json").is_file()


def test_each_process_takes_an_interleaved_share_of_a_batch():
    batch = [5, 3, 8, 1, 9]
    shares = [distributed.share(batch, distributed.World(rank, 2)) for rank in range(2)]
    assert shares == [[5, 8, 9], [3, 1]]
    assert distributed.share(batch, distributed.World()) == batch


def test_nproc_is_refused_under_torchrun(monkeypatch, tiny_recipe, write_recipe, capsys):
    from tailorkit import cli

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert cli.main(["train", str(write_recipe(tiny_recipe)), "--nproc", "2"]) == 2
    assert "leave --nproc out" in capsys.readouterr().err
