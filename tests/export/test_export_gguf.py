"""GGUF export of a tiny Llama LoRA run: merged, written with llama.cpp's tensor names and
rotary layout, read back by transformers' GGUF reader with the same logits and tokenizer."""

from __future__ import annotations

import json

import pytest

from tailorkit import api
from tailorkit.errors import TailorError
from tailorkit.export.run import export_run
from tailorkit.recipe import recipe_from_dict
from test_causal_lm import _recipe, qa_csv  # noqa: F401  (module fixtures)

pytest.importorskip("gguf")


def test_a_lora_lm_run_exports_to_gguf_with_the_same_logits_and_tokens(tiny_llama, qa_csv, tmp_path):  # noqa: F811
    run = api.train(recipe_from_dict(_recipe(tiny_llama, qa_csv, tmp_path / "run",
                                             [{"lora": {"r": 8, "dropout": 0.0}}], epochs=2)))
    record = export_run(run, "gguf", tmp_path / "gguf", samples=None)
    p = record["parity"]
    assert p["passed"] and p["max_abs_logit_diff"] < 1e-4 and p["metric"] == "perplexity"
    assert p["run"] == pytest.approx(p["export"], rel=1e-5) and p["tokenizer_agreement"] == 1.0
    assert json.loads((tmp_path / "gguf" / "export.json").read_text())["format"] == "gguf"

    import gguf

    reader = gguf.GGUFReader(str(tmp_path / "gguf" / "model.gguf"))
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "blk.1.attn_q.weight", "output_norm.weight"} <= names
    assert "output.weight" not in names  # tied embeddings: llama.cpp reuses token_embd


def test_gguf_refuses_classifiers_and_onnx_refuses_lms(finished_run, tiny_llama, qa_csv, tmp_path):  # noqa: F811
    with pytest.raises(TailorError, match="GGUF export is for causal LMs"):
        export_run(finished_run, "gguf", tmp_path / "a")
    run = api.train(recipe_from_dict(_recipe(tiny_llama, qa_csv, tmp_path / "lm", ["full"], epochs=0)))
    with pytest.raises(TailorError, match="ONNX export covers classification"):
        export_run(run, "onnx", tmp_path / "b")
    bottleneck = api.train(recipe_from_dict(_recipe(tiny_llama, qa_csv, tmp_path / "bn", ["bottleneck"],
                                                    epochs=0)))
    with pytest.raises(TailorError, match="bottleneck adapter adds layers"):
        export_run(bottleneck, "gguf", tmp_path / "c")
    assert not any((tmp_path / d).exists() for d in "abc")
