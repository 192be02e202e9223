"""Compression after training: as a recipe's compress: stage and as `tailor compress RUN_DIR`.
One run directory per step, the source run only read, and every compressed run loads like
any other run."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from tailorkit import api, cli
from tailorkit.errors import TailorError
from tailorkit.recipe import recipe_from_dict

STEPS = [{"prune": {"amount": 0.3}}, "quantize"]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _check_compressed(run: Path, labels: list[str]) -> dict:
    """Loads like any run, and predicts what its own predictions_test.csv says."""
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["latency_ms"]) == {"1", "8"} and summary["weights_mb"] > 0
    table = pd.read_csv(run / "predictions_test.csv")
    again = api.predict(run, table["text"].tolist())
    assert again["prediction"].tolist() == table["prediction"].tolist()
    assert summary["labels"] == labels and summary["test"]["accuracy"] == pytest.approx(
        (table["label"] == table["prediction"]).mean())
    return summary


def test_a_recipe_compress_section_writes_one_run_per_step(tiny_recipe, tmp_path):
    out = tmp_path / "small"
    raw = {**tiny_recipe, "compress": {"steps": STEPS, "output_dir": str(out), "latency_batches": [1, 8],
                                       "latency_examples": 8}}
    run = api.train(recipe_from_dict(raw))
    main = json.loads((run / "summary.json").read_text())
    assert sorted(p.name for p in out.iterdir()) == ["1-prune", "2-quantize"]
    pruned = _check_compressed(out / "1-prune", main["labels"])
    quantized = _check_compressed(out / "2-quantize", main["labels"])
    assert pruned["prune"]["sparsity"] == pytest.approx(0.3, abs=1e-3)
    assert pruned["parameters"]["nonzero"] < pruned["parameters"]["total"]
    assert quantized["quantize"]["quantized_layers"] > 0
    assert quantized["weights_mb"] < pruned["weights_mb"] == pytest.approx(pruned["source"]["weights_mb"])
    assert quantized["source"]["test"] == main["test"] and quantized["steps"] == [{"prune": {"amount": 0.3}},
                                                                                   {"quantize": {}}]
    recipe = api.load_recipe(out / "2-quantize" / "recipe.yaml")
    assert [s.name for s in recipe.compress.steps] == ["prune", "quantize"]


def test_tailor_compress_reads_a_finished_run_and_never_writes_into_it(finished_run, tmp_path, capsys):
    before = _digest(finished_run)
    plan = tmp_path / "compress.yaml"
    plan.write_text(json.dumps({"steps": STEPS, "output_dir": str(tmp_path / "out"),
                                "latency_batches": [1, 8], "latency_examples": 8}))
    assert cli.main(["compress", str(finished_run), str(plan)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith(f"{tmp_path / 'out' / '2-quantize'}: accuracy=")
    assert _digest(finished_run) == before
    labels = json.loads((finished_run / "summary.json").read_text())["labels"]
    _check_compressed(tmp_path / "out" / "2-quantize", labels)
    # A second time the output folder is there: refused, unless --overwrite moves it aside.
    assert cli.main(["compress", str(finished_run), str(plan)]) == 2
    assert "already holds" in capsys.readouterr().err
    assert cli.main(["compress", str(finished_run), str(plan), "--overwrite"]) == 0


@pytest.mark.parametrize(("plan", "words"), [
    ({"steps": [{"prune": {"amout": 0.5}}]}, ["steps[0].prune.amout", "did you mean 'amount'"]),
    ({"steps": ["shrink"]}, ["steps[0]", "unknown compression step 'shrink'"]),
    ({"steps": [{"prune": {"amount": 1.5}}]}, ["steps[0].prune.amount"]),
    ({"steps": []}, ["steps"]),
])
def test_a_bad_compress_file_gets_one_line_naming_the_field(plan, words, finished_run, tmp_path, capsys):
    path = tmp_path / "compress.yaml"
    path.write_text(json.dumps(plan))
    assert cli.main(["compress", str(finished_run), str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err


@pytest.mark.parametrize("steps", [["quantize", "prune"], ["quantize", "quantize_static"]])
def test_a_step_after_an_int8_step_is_refused_before_any_step_runs(steps, tiny_recipe, finished_run, tmp_path,
                                                                   capsys):
    message = (f"{steps[1]} cannot follow quantize, which stores the model in its own (int8) format; "
               "put quantize last")
    with pytest.raises(TailorError, match=rf"compress.steps\[1\]: {re.escape(message)}"):
        recipe_from_dict({**tiny_recipe, "compress": {"steps": steps}})
    path = tmp_path / "compress.yaml"
    path.write_text(json.dumps({"steps": steps, "output_dir": str(tmp_path / "out")}))
    assert cli.main(["compress", str(finished_run), str(path)]) == 2
    assert capsys.readouterr().err == f"error: compress: steps[1]: {message}\n"
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_an_adapter_run_is_merged_first_and_a_non_mergeable_one_is_refused(tiny_recipe, tmp_path):
    compress = {"steps": ["quantize"], "output_dir": str(tmp_path / "small"), "latency_batches": [1],
                "latency_examples": 4}
    run = api.train(recipe_from_dict({**tiny_recipe, "methods": [{"lora": {"r": 4}}], "compress": compress}))
    labels = json.loads((run / "summary.json").read_text())["labels"]
    table = pd.read_csv(tmp_path / "small" / "1-quantize" / "predictions_test.csv")
    assert api.predict(tmp_path / "small" / "1-quantize", table["text"].tolist())["prediction"].tolist() == \
        table["prediction"].tolist() and labels
    with pytest.raises(TailorError, match="compress: prefix keeps its weights apart"):
        recipe_from_dict({**tiny_recipe, "methods": ["prefix"], "compress": compress})


def test_the_compress_stage_leaves_the_trained_run_as_it_was(tiny_recipe, tmp_path):
    compress = {"steps": ["quantize"], "output_dir": str(tmp_path / "small"), "latency_batches": [1],
                "latency_examples": 4}
    plain = api.train(recipe_from_dict({**tiny_recipe, "output_dir": str(tmp_path / "plain")}))
    both = api.train(recipe_from_dict({**tiny_recipe, "output_dir": str(tmp_path / "both"),
                                       "compress": compress}))
    a, b = (json.loads((run / "summary.json").read_text()) for run in (plain, both))
    assert a["test"] == b["test"] and a["base_linear_weight_mb"] == b["base_linear_weight_mb"]
    assert a["parameters"] == b["parameters"]


def test_structured_steps_chain_and_every_step_loads(finished_run, tmp_path):
    """Heads, then FFN neurons, then blocks, then int8: each step's run loads (through
    structure.json where heads went) and predicts what it wrote."""
    from tailorkit.config.compress import CompressConfig

    steps = [{"prune_heads": {"amount": 0.5}}, {"prune_ffn": {"amount": 0.25}}, {"drop_blocks": {"keep": 1}},
             "quantize"]
    runs = api.compress(finished_run, CompressConfig(steps=steps, output_dir=str(tmp_path / "out"),
                                                     latency_batches=[1, 8], latency_examples=8))
    labels = json.loads((finished_run / "summary.json").read_text())["labels"]
    sizes = [_check_compressed(run, labels)["parameters"]["total"] for run in runs]
    assert sizes[0] > sizes[1] > sizes[2] == sizes[3]
    assert all((run / "model" / "structure.json").is_file() for run in runs)


def test_a_head_pruned_model_recovers_by_training_from_its_folder(finished_run, tiny_recipe, tmp_path):
    """Recovery is a fine-tune from the pruned step's model folder: it loads through its
    structure.json, trains, and saves its structure again."""
    from tailorkit.config.compress import CompressConfig

    plan = CompressConfig(steps=[{"prune_heads": {"amount": 0.5}}], output_dir=str(tmp_path / "out"),
                          latency_examples=8)
    (pruned,) = api.compress(finished_run, plan)
    raw = {**tiny_recipe, "model": {**tiny_recipe["model"], "name": str(pruned / "model")},
           "train": {**tiny_recipe["train"], "epochs": 1}}
    run = api.train(recipe_from_dict(raw))
    assert (run / "model" / "structure.json").is_file()
    table = pd.read_csv(run / "predictions_test.csv")
    assert api.predict(run, table["text"].tolist())["prediction"].tolist() == table["prediction"].tolist()
    # a plain transformers folder cannot hold fewer heads than its config says: refused, not written
    from tailorkit.export.run import export_run
    with pytest.raises(TailorError, match="structured pruning reshaped its layers.*--format onnx"):
        export_run(run, "hf", tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    # compressed further, from the recovered run: every step keeps the structure
    labels = json.loads((run / "summary.json").read_text())["labels"]
    plan = CompressConfig(steps=[{"prune_ffn": {"amount": 0.25}}, "quantize"],
                          output_dir=str(tmp_path / "more"), latency_batches=[1, 8], latency_examples=8)
    for step_run in api.compress(run, plan):
        assert (step_run / "model" / "structure.json").is_file()
        _check_compressed(step_run, labels)
