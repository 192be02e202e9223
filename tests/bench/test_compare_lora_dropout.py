"""bench/compare.py --lora-dropout: both sides get the same LoRA dropout, and without the flag
tailorkit's default, so old rows (run with 0.1, the default then) stay reproducible."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _compare():
    spec = importlib.util.spec_from_file_location("bench_compare", ROOT / "bench" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("flag", "want"), [([], 0.0), (["--lora-dropout", "0.1"], 0.1)])
def test_lora_dropout_reaches_both_sides(flag, want, tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    compare = _compare()
    args = compare.parse_args(["--method", "lora", "--data", "tweet-sentiment", *flag])
    recipe = compare.make_recipe(args, tmp_path / "run")
    assert recipe.methods[0].config.dropout == want
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    peft_model = compare.trainer_method("lora", model, args.lora_dropout)
    assert peft_model.peft_config["default"].lora_dropout == want
