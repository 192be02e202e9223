"""What a compression is measured against: the source's size is the whole model it compresses,
an adapter run's merged model included (not its adapter file)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import make_sentences, recipe_dict
from tailorkit import api
from tailorkit.compress.measure import parameter_counts, source_weights_mb, weights_mb
from tailorkit.config.compress import CompressConfig
from tailorkit.models.handle import load_causal_lm
from tailorkit.pipeline.compress import plain_model
from tailorkit.pipeline.load import load_run
from tailorkit.pipeline.run_dir import MODEL
from tailorkit.recipe import recipe_from_dict


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """A full fine-tuning run and a LoRA run of the tiny BERT, one epoch each."""
    root = tmp_path_factory.mktemp("measure")
    make_sentences(120).to_csv(root / "s.csv", index=False)
    out = {}
    for name, methods in (("full", ["full"]), ("lora", [{"lora": {"r": 4}}])):
        raw = {**recipe_dict(tiny_model_dir, root / "s.csv", root / name, epochs=1), "methods": methods}
        out[name] = api.train(recipe_from_dict(raw))
    return out


def _source(run: Path):
    _, handle, _, methods = load_run(run, dequantize=True)
    return plain_model(handle, methods, run)


def test_the_source_size_is_the_whole_model_for_a_full_run_and_a_lora_run(runs):
    whole = weights_mb(runs["full"] / MODEL)
    assert source_weights_mb(runs["full"] / MODEL, _source(runs["full"])) == whole  # its own weight files
    assert weights_mb(runs["lora"] / MODEL) < whole  # the adapter file alone
    assert source_weights_mb(runs["lora"] / MODEL, _source(runs["lora"])) == whole  # base + merged adapter


def test_compressing_a_lora_run_compares_with_the_merged_model_not_the_adapter(runs, tmp_path):
    plan = CompressConfig(steps=["quantize"], output_dir=str(tmp_path / "out"), latency_batches=[1],
                          latency_examples=4)
    (step,) = api.compress(runs["lora"], plan)
    summary = json.loads((step / "summary.json").read_text())
    assert summary["source"]["weights_mb"] == weights_mb(runs["full"] / MODEL)
    assert summary["weights_mb"] < summary["source"]["weights_mb"]  # int8 is smaller than its source


def test_a_tied_weight_counts_once(tiny_llama):
    """The tiny Llama ties its embeddings to its output layer: one tensor, counted twice before."""
    handle = load_causal_lm(tiny_llama)
    assert handle.model.get_output_embeddings().weight is handle.model.get_input_embeddings().weight
    assert parameter_counts(handle)["total"] == sum(p.numel() for p in handle.model.parameters())
