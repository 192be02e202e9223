"""One contract over every registered task.

Each task registers itself in `tailorkit.tasks.TASKS`; CASES below holds a tiny recipe for
each. A task registered without a case fails `test_every_registered_task_has_a_case` (and its
own parametrised case), so a new task cannot skip the contract.

For every task, a real run of a few steps on a tiny model:
  - its declared facts hold together: `auto` is one of its losses, its headline metrics are
    reported, and the recipe check refuses a metric it does not have;
  - the run writes summary.json with every headline metric on the test split and every
    task metric on the validation split;
  - the run directory loads back the way `tailor predict`/`eval`/`generate` load it, and the
    loaded model gives the test loss the summary reports.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import build_bpe_tokenizer, make_sentences
from tailorkit import api
from tailorkit.errors import TailorError
from tailorkit.inference import load_run
from tailorkit.pipeline import setup_run
from tailorkit.recipe import recipe_from_dict
from tailorkit.tasks import TASKS

QUICK = {"epochs": 1, "max_steps": 3, "batch_size": 8, "lr": 5e-3, "progress": False, "threads": 1}
OUTPUTS = {"classes", "scalar", "next_token", "masked_token"}


@pytest.fixture(scope="module")
def assets(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    """The tiny models and tables the cases train on."""
    from transformers import LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("task-contract")
    make_sentences(80).to_csv(root / "sentences.csv", index=False)
    rng = random.Random(0)
    pairs = [("What is two plus two?", "Four."), ("Name a colour.", "Blue."), ("Say hello.", "Hello!")]
    pd.DataFrame([dict(zip(("prompt", "completion"), rng.choice(pairs), strict=True)) for _ in range(40)]
                 ).to_csv(root / "qa.csv", index=False)
    tokenizer = build_bpe_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(root / "llama")
    tokenizer.save_pretrained(root / "llama")
    return {"bert": tiny_model_dir, "llama": root / "llama", "sentences": root / "sentences.csv",
            "qa": root / "qa.csv"}


def _text(task: str, a: dict, **data) -> dict:
    return {"task": task, "model": {"name": str(a["bert"]), "max_length": 32},
            "data": {"train": str(a["sentences"]), "split": {"validation": 0.25, "test": 0.25}, **data}}


CASES = {
    "classification": lambda a: _text("classification", a),
    "regression": lambda a: _text("regression", a, label_column="score"),
    "mlm": lambda a: _text("mlm", a),
    "causal_lm": lambda a: {"task": "causal_lm", "model": {"name": str(a["llama"]), "max_length": 32},
                            "data": {"train": str(a["qa"]), "split": {"validation": 0.25, "test": 0.25}},
                            "generation": {"samples": 1, "max_new_tokens": 4}},
    "image_classification": lambda a: {
        "task": "image_classification", "model": {"name": "mobilenet-v2", "pretrained": False},
        "data": {"name": "digits", "max_train_samples": 48, "max_eval_samples": 24,
                 "image": {"size": 32, "augment": "none", "hflip": False}}},
}


def test_every_registered_task_has_a_case():
    assert sorted(CASES) == sorted(TASKS)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_task_contract(name, assets, tmp_path):
    if name not in CASES:
        pytest.fail(f"task '{name}' is registered but has no entry in CASES (tests/contract)")
    task = TASKS[name]
    assert "auto" in task.losses and task.output in OUTPUTS and task.modality in ("text", "image")
    raw = {**CASES[name](assets), "methods": ["full"], "train": QUICK, "seed": 0,
           "output_dir": str(tmp_path / "run")}
    with pytest.raises(TailorError, match="early_stopping.metric"):
        recipe_from_dict({**raw, "train": {**QUICK, "early_stopping": {"metric": "no_such_metric"}}})

    run = api.train(recipe_from_dict(raw))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["task"] == name and summary["steps"] == 3
    assert set(task.headline) <= set(summary["test"]), sorted(summary["test"])
    assert set(task.metrics) <= set(summary["validation"]), sorted(summary["validation"])

    # Load the run as `tailor predict` does, and score the test split with it again.
    recipe, handle, labels, _ = load_run(run)
    quiet = recipe.model_copy(update={"generation": recipe.generation.model_copy(update={"samples": 0})})
    (tmp_path / "again").mkdir()
    setup = setup_run(quiet, tmp_path / "again")  # the same data, as the run read it
    setup.handle = handle
    again = task.write_test_outputs(setup, quiet, tmp_path / "again")
    assert again["loss"] == pytest.approx(summary["test"]["loss"], abs=1e-5)
    assert labels == summary["labels"]
