"""QLoRA: a 4-bit NF4 base (bitsandbytes, on CPU here) under trainable LoRA."""

from __future__ import annotations

import gc
import json
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import build_bpe_tokenizer
from tailorkit import api
from tailorkit.data.chat import prepare_chat_data
from tailorkit.errors import TailorError
from tailorkit.evaluate.evaluator import language_model_metrics
from tailorkit.methods import apply_methods
from tailorkit.models.handle import load_causal_lm
from tailorkit.models.quantize import (
    NF4Spec,
    dequantized_weight,
    is_4bit,
    linear_weight_bytes,
    quantize_frozen_linears,
)
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


def frozen_4bit(llama_dir, block_size=64):
    handle = load_causal_lm(llama_dir)
    handle.model.requires_grad_(False)
    quantize_frozen_linears(handle.model, NF4Spec(block_size))
    return handle


def layer_errors(plain, quantized) -> dict[str, float]:
    """Relative weight error of every 4-bit layer against the fp32 original."""
    originals = dict(plain.model.named_modules())
    return {name: float((dequantized_weight(m) - originals[name].weight.detach()).norm()
                        / originals[name].weight.detach().norm())
            for name, m in quantized.model.named_modules() if is_4bit(m)}


def test_base_linear_weights_are_really_4bit(llama_dir):
    plain, quantized = load_causal_lm(llama_dir), frozen_4bit(llama_dir)
    linears = [m for n, m in quantized.model.named_modules() if n.startswith("model.layers")
               and isinstance(m, torch.nn.Linear)]
    assert linears and all(is_4bit(m) and m.weight.dtype == torch.uint8 for m in linears)
    assert not is_4bit(quantized.model.lm_head)  # tied to the embeddings: left alone
    ratio = linear_weight_bytes(quantized.model) / linear_weight_bytes(plain.model)
    # 4 of 32 bits, plus double-quantised scales; the full-precision LM head counts on both sides
    assert ratio < 0.6, ratio

    # NF4 rounds each weight to one of 16 levels per block of 64: the stated tolerance is a
    # relative weight error below 0.12 (about 0.09 for normal weights), and the outputs follow.
    errors = layer_errors(plain, quantized)
    assert len(errors) == len(linears) and max(errors.values()) < 0.12, errors
    batch = plain.tokenizer(["What is the capital of France?"], return_tensors="pt")
    with torch.no_grad():
        a, b = plain.model(**batch).logits, quantized.model(**batch).logits
    assert (a - b).norm() / a.norm() < 0.5  # a random 2-block model; real-model numbers: docs


def test_smaller_blocks_quantise_more_precisely(llama_dir):
    plain = load_causal_lm(llama_dir)
    e64 = layer_errors(plain, frozen_4bit(llama_dir, 64))
    e32 = layer_errors(plain, frozen_4bit(llama_dir, 32))
    assert all(e32[name] < e64[name] for name in e64)


def test_trainable_layers_stay_full_precision(llama_dir):
    handle = load_causal_lm(llama_dir)
    handle.model.requires_grad_(False)
    handle.model.model.layers[1].mlp.down_proj.weight.requires_grad_(True)
    quantize_frozen_linears(handle.model, NF4Spec())
    assert not is_4bit(handle.model.model.layers[1].mlp.down_proj)
    assert is_4bit(handle.model.model.layers[0].mlp.down_proj)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc/self/maps")
def test_the_checkpoint_file_is_let_go_once_the_base_is_4bit(llama_dir, tmp_path):
    """transformers maps model.safetensors and the tensors are views into it: while any stays
    there (the tied embeddings), every page read for quantising stays resident."""
    folder = Path(shutil.copytree(llama_dir, tmp_path / "llama"))  # no other test's model maps it
    checkpoint = str((folder / "model.safetensors").resolve())
    handle = load_causal_lm(folder)
    assert checkpoint in Path("/proc/self/maps").read_text()  # loaded by mapping the file
    embeddings = handle.model.get_input_embeddings().weight.detach().clone()
    quantize_frozen_linears(handle.model, NF4Spec())
    gc.collect()  # a reference cycle would let go at the next collection anyway
    assert checkpoint not in Path("/proc/self/maps").read_text()
    assert torch.equal(handle.model.get_input_embeddings().weight, embeddings)  # the same values
    assert handle.model.get_output_embeddings().weight is handle.model.get_input_embeddings().weight


def test_loftq_starts_closer_to_the_full_precision_weights(llama_dir):
    """LoftQ's Q + scale * B A approximates W better than NF4's Q alone, and a second
    quantisation of the same weights derives the same Q and B A (what loading relies on)."""
    plain = load_causal_lm(llama_dir)
    starts = []
    for _ in range(2):
        handle = load_causal_lm(llama_dir)
        apply_methods(handle, [{"lora": {"r": 4, "init": "loftq", "loftq_iter": 3}}], nf4=NF4Spec())
        starts.append(handle)
    originals = dict(plain.model.named_modules())
    layers = [(n.removeprefix("base_model.model.").removesuffix(".base_layer"), m)
              for n, m in starts[0].model.named_modules() if is_4bit(m)]
    parents = dict(starts[0].model.named_modules())
    assert layers
    for name, layer in layers:
        lora = parents["base_model.model." + name]
        weight = originals[name].weight
        start = dequantized_weight(layer) + lora.scaling["default"] * (
            lora.lora_B["default"].weight @ lora.lora_A["default"].weight)
        plain_error = (_nf4(weight) - weight).norm()
        assert (start - weight).norm() < plain_error, name
    again = dict(starts[1].model.named_modules())
    for name, layer in layers:
        twin = again["base_model.model." + name + ".base_layer"]
        assert torch.equal(layer.weight.data, twin.weight.data), name


def _nf4(weight):
    import bitsandbytes.functional as bnb

    codes, state = bnb.quantize_4bit(weight.detach().contiguous(), blocksize=64, quant_type="nf4",
                                     compress_statistics=True)
    return bnb.dequantize_4bit(codes, state)


@pytest.fixture(scope="module", params=["random", "loftq"])
def qlora_run(llama_dir, tmp_path_factory, request):
    root = tmp_path_factory.mktemp("qlora")
    rows = [dict(zip(("prompt", "completion"), random.Random(i).choice(QA), strict=True)) for i in range(40)]
    pd.DataFrame(rows).to_csv(root / "qa.csv", index=False)
    recipe = {"task": "sft", "model": {"name": str(llama_dir), "max_length": 64, "quantize_base": "nf4"},
              "data": {"train": str(root / "qa.csv")},
              "methods": [{"lora": {"r": 4, "dropout": 0.0, "init": request.param}}],
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
    recipe, handle, _, _ = api.load_run(run)  # rebuilt: 4-bit base (re-derived) + adapter
    assert any(is_4bit(m) for m in handle.model.modules())
    test = prepare_chat_data(recipe.data, handle.tokenizer, recipe.model.max_length).splits["test"]
    assert language_model_metrics(handle, test, 8)["loss"] == pytest.approx(summary["test"]["loss"],
                                                                            abs=1e-5)


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
    handle = load_causal_lm(llama_dir)
    apply_methods(handle, [{"lora": {"r": 4}}], nf4=NF4Spec())
    trainable = handle.trainable_names()
    assert trainable and all("lora_" in n for n in trainable), [n for n in trainable if "lora_" not in n][:3]
    assert any(is_4bit(m) for m in handle.model.modules())


def test_loftq_needs_a_4bit_base(llama_dir):
    with pytest.raises(TailorError, match="loftq starts LoRA"):
        recipe_from_dict({"task": "sft", "model": {"name": str(llama_dir)}, "data": {"train": "x.csv"},
                          "methods": [{"lora": {"init": "loftq"}}]})
