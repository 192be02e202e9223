"""QLoRA: a 4-bit NF4 base (bitsandbytes, on CPU here) under trainable LoRA."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest
import torch

from conftest import build_bpe_tokenizer
from tailorkit import api
from tailorkit.errors import TailorError
from tailorkit.models.handle import load_causal_lm
from tailorkit.models.quantize import dequantized_state, is_4bit, linear_weight_bytes, nf4_config
from tailorkit.recipe import recipe_from_dict

QA = [("What is the capital of France?", "The capital of France is Paris."),
      ("Hello!", "How can I help you today?")]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A tiny Llama with weights of a trained model's scale (NF4 assumes roughly normal weights)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("models") / "llama"
    tokenizer = build_bpe_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=256, tie_word_embeddings=True,
                         pad_token_id=tokenizer.pad_token_id, initializer_range=0.2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_base_linear_weights_are_really_4bit(llama_dir):
    plain = load_causal_lm(llama_dir)
    quantized = load_causal_lm(llama_dir, quantization=nf4_config(bf16=False))
    linears = [m for n, m in quantized.model.named_modules() if n.startswith("model.layers")
               and isinstance(m, torch.nn.Linear)]
    assert linears and all(is_4bit(m) and m.weight.dtype == torch.uint8 for m in linears)
    assert not is_4bit(quantized.model.lm_head)  # tied to the embeddings: left alone
    ratio = linear_weight_bytes(quantized.model) / linear_weight_bytes(plain.model)
    # 4 of 32 bits, plus double-quantised scales; the full-precision LM head counts on both sides
    assert ratio < 0.6, ratio

    # NF4 rounds each weight to one of 16 levels per block of 64: the stated tolerance is a
    # relative weight error below 0.12 (about 0.09 for normal weights), and the outputs follow.
    restored = dequantized_state(quantized.model)
    for name, weight in plain.model.named_parameters():
        if name in restored and name.startswith("model.layers") and weight.ndim == 2:
            assert (restored[name] - weight).norm() / weight.norm() < 0.12, name
    batch = plain.tokenizer(["What is the capital of France?"], return_tensors="pt")
    with torch.no_grad():
        a, b = plain.model(**batch).logits, quantized.model(**batch).logits
    assert (a - b).norm() / a.norm() < 0.5  # a random 2-block model; real-model numbers: docs


@pytest.fixture(scope="module")
def qlora_run(llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("qlora")
    rows = [dict(zip(("prompt", "completion"), random.Random(i).choice(QA), strict=True)) for i in range(40)]
    pd.DataFrame(rows).to_csv(root / "qa.csv", index=False)
    recipe = {"task": "sft", "model": {"name": str(llama_dir), "max_length": 64, "quantize_base": "nf4"},
              "data": {"train": str(root / "qa.csv")}, "methods": [{"lora": {"r": 4, "dropout": 0.0}}],
              "generation": {"samples": 0},
              "train": {"epochs": 3, "batch_size": 8, "lr": 2e-2, "progress": False, "threads": 1},
              "output_dir": str(root / "run")}
    before = api.train(recipe_from_dict({**recipe, "train": {**recipe["train"], "epochs": 0},
                                         "output_dir": str(root / "before")}))
    return before, api.train(recipe_from_dict(recipe))


def test_qlora_trains_saves_and_reports_memory(qlora_run):
    before, run = qlora_run
    summary = json.loads((run / "summary.json").read_text())
    start = json.loads((before / "summary.json").read_text())["test"]["loss"]
    assert summary["test"]["loss"] < start
    assert summary["quantize_base"] == "nf4" and summary["base_linear_weight_mb"] > 0
    assert summary["peak_rss_mb"] > 0
    _, handle, _, _ = api.load_run(run)  # rebuilt: 4-bit base + adapter
    assert any(is_4bit(m) for m in handle.model.modules())


def test_qlora_merge_dequantises_and_matches(qlora_run, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    _, run = qlora_run
    _, adapted, _, _ = api.load_run(run)
    out = api.merge(run, tmp_path / "merged")
    assert "dequantised" in capsys.readouterr().err
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not any(is_4bit(m) for m in merged.modules())
    assert all(p.dtype == torch.float32 for p in merged.parameters())
    batch = adapted.tokenizer(["What is the capital"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(adapted.model(**batch).logits, merged(**batch).logits, atol=1e-4)


def test_a_4bit_base_needs_lora(llama_dir, tmp_path):
    with pytest.raises(TailorError, match="a 4-bit base cannot train"):
        recipe_from_dict({"task": "sft", "model": {"name": str(llama_dir), "quantize_base": "nf4"},
                          "data": {"train": "x.csv"}, "methods": ["full"]})


def test_qlora_trains_only_lora(llama_dir):
    from tailorkit.methods import apply_methods

    handle = load_causal_lm(llama_dir, quantization=nf4_config(bf16=False))
    apply_methods(handle, [{"lora": {"r": 4}}])
    trainable = handle.trainable_names()
    assert trainable and all("lora_" in n for n in trainable), [n for n in trainable if "lora_" not in n][:3]
