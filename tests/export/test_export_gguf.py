"""GGUF export of a tiny Llama run: merged, written with llama.cpp's tensor names and rotary
layout at f32, f16 and Q8_0, read back by transformers' GGUF reader with the same logits (within
the type's tolerance) and tokenizer; generation from the file stops at the end of the answer."""

from __future__ import annotations

import json

import pytest

from tailorkit import api
from tailorkit.cli import main
from tailorkit.errors import TailorError
from tailorkit.export.gguf import DEFAULT_TOLERANCE
from tailorkit.export.run import export_run
from tailorkit.recipe import recipe_from_dict
from test_causal_lm import QA, _recipe, qa_csv  # noqa: F401  (module fixtures)

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def lora_run(tiny_llama, qa_csv, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("gguf-lora") / "run"
    return api.train(recipe_from_dict(_recipe(tiny_llama, qa_csv, out, [{"lora": {"r": 8, "dropout": 0.0}}],
                                              epochs=2)))


@pytest.fixture(scope="module")
def exports(lora_run, tmp_path_factory) -> dict:
    """The LoRA run exported at each type, parity on the whole test split."""
    root = tmp_path_factory.mktemp("gguf-exports")
    return {kind: (export_run(lora_run, "gguf", root / kind, samples=None, gguf_type=kind), root / kind)
            for kind in ("f32", "f16", "q8_0")}


def test_a_lora_lm_run_exports_to_gguf_with_the_same_logits_and_tokens(exports):
    record, folder = exports["f32"]
    p = record["parity"]
    assert p["passed"] and p["max_abs_logit_diff"] < 1e-4 and p["metric"] == "perplexity"
    assert p["run"] == pytest.approx(p["export"], rel=1e-5) and p["tokenizer_agreement"] == 1.0
    assert json.loads((folder / "export.json").read_text())["format"] == "gguf"

    reader = gguf.GGUFReader(str(folder / "model.gguf"))
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "blk.1.attn_q.weight", "output_norm.weight"} <= names
    assert "output.weight" not in names  # tied embeddings: llama.cpp reuses token_embd


@pytest.mark.parametrize(("kind", "qtype"), [("f16", Q.F16), ("q8_0", Q.Q8_0)])
def test_rounded_types_keep_norms_f32_and_stay_within_their_tolerance(exports, kind, qtype):
    record, folder = exports[kind]
    assert record["gguf_type"] == kind
    assert json.loads((folder / "export.json").read_text())["gguf_type"] == kind
    p = record["parity"]
    assert p["tolerance"] == DEFAULT_TOLERANCE[kind] and p["passed"] and p["tokenizer_agreement"] == 1.0
    assert 0 < p["max_abs_logit_diff"] < DEFAULT_TOLERANCE[kind]  # rounded, yet close
    assert p["export"] == pytest.approx(p["run"], rel=1e-3)

    reader = gguf.GGUFReader(str(folder / "model.gguf"))
    types = {t.name: Q(t.tensor_type) for t in reader.tensors}
    # llama.cpp's converter: norms (1-D) stay F32; every matrix, the token embedding too, is `kind`
    assert {n for n, t in types.items() if t == Q.F32} == {n for n in types if n.endswith("_norm.weight")}
    assert types["token_embd.weight"] == qtype and types["blk.0.ffn_down.weight"] == qtype
    file_type = reader.fields["general.file_type"]
    expected = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[kind]
    assert int(file_type.parts[file_type.data[0]][0]) == expected


def test_q8_0_is_the_smallest_file(exports):
    size = {kind: (folder / "model.gguf").stat().st_size for kind, (_, folder) in exports.items()}
    assert size["q8_0"] < size["f16"] < size["f32"]


@pytest.mark.parametrize("kind", ["f32", "q8_0"])
def test_generation_from_the_exported_file_stops_at_eos(tiny_llama, qa_csv, tmp_path, kind):  # noqa: F811
    """The fixture's tokenizer calls <|endoftext|> its EOS while its ChatML answers end with
    <|im_end|>: the file must name the token generation really has to stop at."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = api.train(recipe_from_dict(_recipe(tiny_llama, qa_csv, tmp_path / "run", ["full"], epochs=12)))
    export_run(run, "gguf", tmp_path / "gguf", gguf_type=kind)
    folder = str(tmp_path / "gguf")
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file="model.gguf")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file="model.gguf")
    assert tokenizer.eos_token == "<|im_end|>"
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    question, answer = QA[0]
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                           add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**prompt, max_new_tokens=30, do_sample=False)[0, prompt["input_ids"].shape[1]:]
    assert out[-1].item() == tokenizer.eos_token_id and len(out) < 30  # stopped, not cut off
    assert tokenizer.decode(out, skip_special_tokens=True).strip() == answer


def test_the_cli_writes_f16_by_default(lora_run, tmp_path, capsys):
    command = ["export", str(lora_run), "--format", "gguf", "--samples", "4"]
    assert main([*command, "--out", str(tmp_path / "g")]) == 0
    assert "as gguf f16 to" in capsys.readouterr().out
    record = json.loads((tmp_path / "g" / "export.json").read_text())
    assert record["gguf_type"] == "f16" and record["parity"]["tolerance"] == DEFAULT_TOLERANCE["f16"]
    with pytest.raises(SystemExit):  # argparse names the choices
        main([*command, "--gguf-type", "q4_k", "--out", str(tmp_path / "h")])
    assert not (tmp_path / "h").exists()


def test_gguf_type_is_for_gguf_only(finished_run, tmp_path):
    with pytest.raises(TailorError, match="--gguf-type q8_0 is for --format gguf"):
        export_run(finished_run, "onnx", tmp_path / "a", gguf_type="q8_0")
    assert not (tmp_path / "a").exists()


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
