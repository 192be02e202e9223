"""Causal-LM runs end to end on a tiny Llama: instruction tuning lowers the response loss,
sample generations are written, the run generates, adapters save and merge, resume is exact."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import build_bpe_tokenizer
from tailorkit import api
from tailorkit.generate import generate
from tailorkit.recipe import recipe_from_dict

QA = [("What is the capital of France?", "The capital of France is Paris."),
      ("Translate good morning into German.", "Guten Morgen."),
      ("Hello!", "How can I help you today?")]


@pytest.fixture(scope="module")
def qa_csv(tmp_path_factory) -> Path:
    rng = random.Random(0)
    rows = [dict(zip(("prompt", "completion"), rng.choice(QA), strict=True)) for _ in range(60)]
    path = tmp_path_factory.mktemp("data") / "qa.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _recipe(model: Path, data: Path, out: Path, methods: list, **train) -> dict:
    return {"task": "sft", "model": {"name": str(model), "max_length": 64},
            "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.2}},
            "methods": methods, "generation": {"samples": 2, "max_new_tokens": 8},
            "train": {"epochs": 4, "batch_size": 8, "lr": 1e-2, "progress": False, "threads": 1,
                      "schedule": "constant", **train},
            "output_dir": str(out)}


@pytest.fixture(scope="module")
def runs(tiny_llama, qa_csv, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lm-runs")
    out = {}
    for name, methods, train in [("before", ["full"], {"epochs": 0}), ("full", ["full"], {"epochs": 12}),
                                 # the tiny random model's logits are too flat for LoRA alone:
                                 # the final norm (the head, after freeze top 0) trains too
                                 ("lora", [{"freeze": {"top": 0}}, {"lora": {"r": 8, "dropout": 0.0}}],
                                  {"lr": 1e-1, "epochs": 10})]:
        out[name] = api.train(recipe_from_dict(_recipe(tiny_llama, qa_csv, root / name, methods, **train)))
    return out


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


# LoRA on a random 2-layer model moves slowly (its logits stay flat); the real-model numbers
# are in docs/causal-lm.md.
@pytest.mark.parametrize(("name", "factor"), [("full", 0.8), ("lora", 0.95)])
def test_training_lowers_the_response_loss(runs, name, factor):
    before, after = _summary(runs["before"])["test"], _summary(runs[name])["test"]
    assert set(after) >= {"loss", "perplexity", "tokens"}
    assert after["perplexity"] == pytest.approx(2.718281828 ** after["loss"], rel=1e-6)
    assert after["loss"] < factor * before["loss"], (before["loss"], after["loss"])
    assert _summary(runs[name])["format"] == "prompt_completion"


def test_generations_file_has_before_and_after(runs):
    lines = [json.loads(x) for x in (runs["full"] / "generations.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert line["reference"] in {a for _, a in QA}
        assert line["prompt"][-1]["role"] == "user"
        assert set(line["before"]) == set(line["after"]) == {"greedy", "sampled"}
    assert any(line["after"]["greedy"] == line["reference"] for line in lines)  # it learnt them
    assert not (runs["full"] / "generations_before.json").exists()


def test_a_finished_run_generates_and_adapters_merge(runs, tmp_path):
    from transformers import AutoModelForCausalLM

    messages = [{"role": "user", "content": QA[0][0]}]
    _, handle, _, _ = api.load_run(runs["full"])
    assert generate(handle, messages, max_new_tokens=10, greedy=True) == QA[0][1]
    _, handle, _, _ = api.load_run(runs["lora"])
    sampled = generate(handle, messages, max_new_tokens=4, seed=0)
    assert generate(handle, messages, max_new_tokens=4, seed=0) == sampled  # the seed fixes sampling
    merged = api.merge(runs["lora"], tmp_path / "merged")
    _, adapted, _, _ = api.load_run(runs["lora"])
    plain = AutoModelForCausalLM.from_pretrained(merged).eval()
    batch = adapted.tokenizer(["What is the capital"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(adapted.model(**batch).logits, plain(**batch).logits, atol=1e-4)
    assert json.loads((runs["lora"] / "model" / "adapter_config.json").read_text())["task_type"] == \
        "CAUSAL_LM"


def test_every_method_runs_on_a_causal_lm(tiny_llama, qa_csv, tmp_path):
    for methods in ([{"freeze": {"top": 1}}], ["ia3"], [{"prefix": {"virtual_tokens": 4}}],
                    [{"prompt": {"virtual_tokens": 4}}], [{"bottleneck": {"placement": "houlsby"}}]):
        name = next(iter(methods[0])) if isinstance(methods[0], dict) else methods[0]
        recipe = _recipe(tiny_llama, qa_csv, tmp_path / name, methods, epochs=1)
        recipe["generation"]["samples"] = 0
        run = api.train(recipe_from_dict(recipe))
        assert _summary(run)["test"]["loss"] > 0, name


def test_other_formats_and_named_templates(tiny_llama, tmp_path):
    alpaca = pd.DataFrame([{"instruction": q, "input": "", "output": a} for q, a in QA * 10])
    path = tmp_path / "alpaca.jsonl"
    alpaca.to_json(path, orient="records", lines=True)
    recipe = _recipe(tiny_llama, path, tmp_path / "alpaca", ["full"], epochs=1)
    recipe["data"]["template"] = "alpaca"
    recipe["model"]["max_length"] = 256  # the alpaca preamble is long in this tiny vocabulary
    recipe["generation"]["samples"] = 1
    run = api.train(recipe_from_dict(recipe))
    assert _summary(run)["format"] == "alpaca"
    saved = json.loads((run / "model" / "tokenizer_config.json").read_text())
    template = saved.get("chat_template") or (run / "model" / "chat_template.jinja").read_text()
    assert "### Instruction" in template  # inference formats prompts as training did


def test_resume_is_exact_for_a_causal_lm(tiny_llama, qa_csv, tmp_path, resumed_matches_uninterrupted):
    recipe = _recipe(tiny_llama, qa_csv, tmp_path / "whole", ["full"], checkpoint_steps=2)
    assert resumed_matches_uninterrupted(recipe, crash_at_step=5) <= 1e-6


def test_cli_generate_and_chat(runs, capsys, monkeypatch):
    import io

    from tailorkit.cli import main

    assert main(["generate", str(runs["full"]), "--prompt", QA[0][0], "--greedy", "--max-tokens", "10"]) == 0
    assert capsys.readouterr().out.strip() == QA[0][1]
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{QA[1][0]}\n{QA[2][0]}\n\n"))
    assert main(["chat", str(runs["full"]), "--greedy", "--max-tokens", "10"]) == 0
    replies = [line for line in capsys.readouterr().out.splitlines() if "model> " in line]
    assert len(replies) == 2 and replies[0].endswith(QA[1][1])


def test_cli_train_prints_the_lm_metrics(tiny_llama, qa_csv, tmp_path, write_recipe, capsys):
    from tailorkit.cli import main

    recipe = _recipe(tiny_llama, qa_csv, tmp_path / "cli", ["full"], epochs=1)
    recipe["generation"]["samples"] = 0
    assert main(["train", str(write_recipe(recipe))]) == 0
    assert "perplexity=" in capsys.readouterr().out


def test_predict_and_eval_refuse_a_causal_lm_run_and_name_generate(runs, qa_csv, capsys):
    from tailorkit.cli import main

    for argv in (["predict", str(runs["full"]), "--text", "hi", "--text", "What is your name?"],
                 ["eval", str(runs["full"]), "--data", str(qa_csv)]):
        assert main(argv) == 2
        assert "generates text: use tailor generate or tailor chat" in capsys.readouterr().err, argv


def test_generate_refuses_a_classifier_run(finished_run, capsys):
    from tailorkit.cli import main

    assert main(["generate", str(finished_run), "--prompt", "hi"]) == 2
    assert "cannot generate text" in capsys.readouterr().err


@pytest.mark.parametrize(("flags", "message"), [
    (["--temperature", "0"], "--temperature 0.0: input should be greater than 0; for the likeliest token use "
                             "--greedy"),
    (["--max-tokens", "0"], "--max-tokens 0: input should be greater than or equal to 1"),
    (["--top-p", "1.5"], "--top-p 1.5: input should be less than or equal to 1")])
def test_bad_generation_flags_are_one_line_errors(finished_run, capsys, flags, message):
    """Checked before any model loads (a transformers traceback before), as the recipe checks them."""
    from tailorkit.cli import main

    assert main(["generate", str(finished_run), "--prompt", "hi", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_generate_flags_default_to_the_runs_generation_section(runs, capsys, monkeypatch):
    from tailorkit import cli

    seen = {}

    def fake_generate(handle, messages, max_new_tokens, temperature, top_p, greedy, seed):
        seen.update(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        return "ok"

    monkeypatch.setattr(cli, "generate", fake_generate)
    assert cli.main(["generate", str(runs["full"]), "--prompt", "hi"]) == 0
    assert seen == {"max_new_tokens": 8, "temperature": 0.7, "top_p": 0.9}  # the recipe's generation:
    assert cli.main(["generate", str(runs["full"]), "--prompt", "hi", "--max-tokens", "3",
                     "--temperature", "0.5"]) == 0
    assert seen == {"max_new_tokens": 3, "temperature": 0.5, "top_p": 0.9}


def test_cli_merge_names_the_class_that_loads_the_merged_model(runs, capsys, tmp_path):
    from tailorkit.cli import main

    assert main(["merge", str(runs["lora"]), "--out", str(tmp_path / "merged")]) == 0
    assert "AutoModelForCausalLM.from_pretrained" in capsys.readouterr().out


def test_a_student_lm_learns_from_its_teacher_not_from_its_labels(runs, tiny_llama, tmp_path):
    """Token-level distillation with alpha 1: every training answer is wrong (rotated between the
    prompts), yet the student starts each answer as the teacher does, and a student trained on
    the labels starts it as the labels do."""
    wrong = pd.DataFrame([{"prompt": q, "completion": QA[(i + 1) % 3][1]} for i, (q, _) in enumerate(QA)] * 8)
    wrong.to_csv(tmp_path / "wrong.csv", index=False)

    def first_tokens(run: Path) -> list[str]:
        _, handle = api.load_generator(run)
        return [generate(handle, [{"role": "user", "content": q}], 1, 1.0, 1.0, True, 0) for q, _ in QA]

    def starts(answers: list[str]) -> list[str]:
        return [tokenizer.decode(tokenizer(a)["input_ids"][:1]) for a in answers]

    tokenizer = build_bpe_tokenizer()

    def student(name: str, methods: list) -> Path:
        raw = _recipe(tiny_llama, tmp_path / "wrong.csv", tmp_path / name, methods, epochs=30)
        return api.train(recipe_from_dict(raw))

    plain = student("plain", ["full"])
    taught = student("taught", [{"distill": {"teacher": str(runs["full"]), "alpha": 1.0, "top_k": 8,
                                             "temperature": 1.0}}])
    assert first_tokens(runs["full"]) == starts([a for _, a in QA])  # the teacher knows the answers
    assert first_tokens(plain) == starts([QA[(i + 1) % 3][1] for i in range(3)])
    assert first_tokens(taught) == first_tokens(runs["full"])
    teacher_loss = _summary(runs["full"])["test"]["loss"]
    assert _summary(taught)["distill"]["teacher_train_loss"] > 10 * teacher_loss  # it disagreed with them


def test_distillation_refuses_a_teacher_with_another_vocabulary(runs, tiny_llama, qa_csv, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from tailorkit.errors import TailorError

    tokenizer = build_bpe_tokenizer(chatml_tokens=False)  # fewer tokens: other ids
    other = tmp_path / "other-llama"
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                 pad_token_id=tokenizer.pad_token_id)).save_pretrained(other)
    tokenizer.save_pretrained(other)
    raw = _recipe(other, qa_csv, tmp_path / "student", [{"distill": {"teacher": str(runs["full"])}}])
    with pytest.raises(TailorError, match="not a causal LM with the student's vocabulary"):
        api.train(recipe_from_dict(raw))
