"""Adapter methods beyond the shared contract: PEFT file compatibility both ways, merging,
zero-init starts, several adapters on one base, and the errors a user can hit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import make_sentences, recipe_dict
from tailorkit import api
from tailorkit.adapter_set import AdapterSet
from tailorkit.errors import TailorError
from tailorkit.methods import apply_methods
from tailorkit.recipe import recipe_from_dict

TEXTS = ["the movie was good and lovely", "awful plot and terrible acting", "a film"]


def _train(tiny_model_dir: Path, root: Path, name: str, methods: list, labels=("neg", "pos"),
           **train) -> Path:
    frame = make_sentences(96, seed=1)
    if len(labels) != 2:  # a different task: same texts, more classes
        frame["label"] = [labels[i % len(labels)] for i in range(len(frame))]
    csv = root / f"{name}.csv"
    frame.to_csv(csv, index=False)
    recipe = recipe_dict(tiny_model_dir, csv, root / name, epochs=1, lr=2e-2, **train)
    return api.train(recipe_from_dict({**recipe, "methods": methods}))


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapter-runs")
    return {
        "lora": _train(tiny_model_dir, root, "lora", [{"lora": {"r": 4}}]),
        "lora3": _train(tiny_model_dir, root, "lora3", [{"lora": {"r": 2}}], labels=("a", "b", "c")),
        "ia3": _train(tiny_model_dir, root, "ia3", ["ia3"]),
        "prefix": _train(tiny_model_dir, root, "prefix", [{"prefix": {"virtual_tokens": 4}}]),
        "houlsby": _train(tiny_model_dir, root, "houlsby", [{"bottleneck": {"placement": "houlsby"}}]),
        "bitfit+lora": _train(tiny_model_dir, root, "bitfit-lora",
                              [{"freeze": {"bias": True}}, {"lora": {"r": 4}}]),
    }


def _batch(tokenizer) -> dict:
    return dict(tokenizer(TEXTS, padding=True, return_tensors="pt"))


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**batch).logits


def _base(tiny_model_dir, labels=("neg", "pos")):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=len(labels), ignore_mismatched_sizes=True)


@pytest.mark.parametrize("name", ["lora", "ia3", "prefix"])
def test_plain_peft_loads_our_adapter_folder(name, runs, tiny_model_dir):
    from peft import PeftModel

    _, handle, _, _ = api.load_run(runs[name])
    config = json.loads((runs[name] / "model" / "adapter_config.json").read_text())
    assert config["peft_type"] == {"lora": "LORA", "ia3": "IA3", "prefix": "PREFIX_TUNING"}[name]
    peft_model = PeftModel.from_pretrained(_base(tiny_model_dir), runs[name] / "model")
    batch = _batch(handle.tokenizer)
    assert torch.equal(_logits(handle.model, batch), _logits(peft_model, batch))


def test_adapter_made_by_peft_elsewhere_loads_and_trains(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(3)
    theirs = get_peft_model(_base(tiny_model_dir),
                            LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["query", "value"]))
    with torch.no_grad():  # a trained-looking adapter, so equality is not trivially base == base
        for n, p in theirs.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    theirs.save_pretrained(tmp_path / "elsewhere")

    from tailorkit.models.handle import load_text_classifier

    handle = load_text_classifier(tiny_model_dir, "classes", ["neg", "pos"])
    apply_methods(handle, [{"lora": {"init_from": str(tmp_path / "elsewhere")}}])
    batch = _batch(handle.tokenizer)
    assert torch.equal(_logits(handle.model, batch), _logits(theirs, batch))
    assert any("lora_A" in n for n in handle.trainable_names()), "init_from must stay trainable"

    csv = tmp_path / "d.csv"
    make_sentences(64).to_csv(csv, index=False)
    recipe = recipe_dict(tiny_model_dir, csv, tmp_path / "run", epochs=1)
    methods = [{"lora": {"init_from": str(tmp_path / "elsewhere")}}]
    run = api.train(recipe_from_dict({**recipe, "methods": methods}))
    _, trained, _, _ = api.load_run(run)
    assert not torch.equal(_logits(trained.model, batch), _logits(theirs, batch))


def test_epochs_zero_evaluates_an_adapter_from_elsewhere(runs, tiny_model_dir, tmp_path):
    """No training: the run scores the adapter as loaded and saves it for predict/merge."""
    csv = tmp_path / "d.csv"
    make_sentences(64).to_csv(csv, index=False)
    recipe = recipe_dict(tiny_model_dir, csv, tmp_path / "run", epochs=0)
    methods = [{"lora": {"init_from": str(runs["lora"] / "model")}}]
    run = api.train(recipe_from_dict({**recipe, "methods": methods}))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 0 and "accuracy" in summary["test"]
    assert summary["samples_per_second"] is None  # nothing trained; valid JSON (no NaN)
    assert api.predict(run, TEXTS).equals(api.predict(runs["lora"], TEXTS))


@pytest.mark.parametrize("name", ["lora", "ia3", "bitfit+lora"])
def test_merged_equals_unmerged_and_adds_no_layers(name, runs, tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    _, handle, _, _ = api.load_run(runs[name])
    out = api.merge(runs[name], tmp_path / "merged")
    merged = AutoModelForSequenceClassification.from_pretrained(out)
    batch = _batch(handle.tokenizer)
    assert torch.allclose(_logits(handle.model, batch), _logits(merged, batch), atol=1e-4, rtol=0)
    base = _base(tiny_model_dir)
    assert [(n, p.shape) for n, p in merged.named_parameters()] == \
           [(n, p.shape) for n, p in base.named_parameters()]  # same layers: same latency


@pytest.mark.parametrize(("name", "says"), [("prefix", "virtual tokens"), ("houlsby", "nonlinear")])
def test_unmergeable_methods_say_why(name, says, runs, tmp_path):
    with pytest.raises(TailorError, match=says):
        api.merge(runs[name], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_merge_refuses_a_run_without_adapter(finished_run, tmp_path):
    with pytest.raises(TailorError, match="already a plain"):
        api.merge(finished_run, tmp_path / "merged")


def test_a_merged_folder_is_also_a_run_of_a_whole_model(runs, tmp_path):
    """`tailor merge --out DIR`: DIR is a plain Hugging Face model folder, and a recipe.yaml beside
    the model's files describes it as a run of that whole model (#21 item 18)."""
    from transformers import AutoModelForSequenceClassification

    from tailorkit.pipeline.run_dir import model_folder

    out = api.merge(runs["lora"], tmp_path / "merged")
    AutoModelForSequenceClassification.from_pretrained(out)  # still loads as a plain model
    recipe, source = api.run_recipe(out), api.run_recipe(runs["lora"])
    assert [spec.name for spec in recipe.methods] == ["full"] and recipe.model.quantize_base == "none"
    assert recipe.model.name == recipe.output_dir == str(out)
    assert recipe.data == source.data and recipe.train == source.train and recipe.task == source.task
    header = f"# tailor merge {runs['lora']}: that run's model (lora) as one plain model here\n"
    assert (out / "recipe.yaml").read_text().startswith(header)
    assert model_folder(out) == out and model_folder(runs["lora"]) == runs["lora"] / "model"


def test_predict_and_eval_take_a_merged_folder(runs, tmp_path, capsys):
    from tailorkit.cli import main

    out = api.merge(runs["lora"], tmp_path / "merged")
    merged, adapter = api.predict(out, TEXTS), api.predict(runs["lora"], TEXTS)
    assert merged["prediction"].tolist() == adapter["prediction"].tolist()
    assert merged["confidence"].tolist() == pytest.approx(adapter["confidence"].tolist(), abs=1e-4)
    data = tmp_path / "holdout.csv"
    make_sentences(20, seed=9).to_csv(data, index=False)
    assert main(["eval", str(out), "--data", str(data)]) == 0
    metrics, expected = json.loads(capsys.readouterr().out), api.evaluate(runs["lora"], str(data))
    assert metrics["accuracy"] == expected["accuracy"]
    assert metrics["loss"] == pytest.approx(expected["loss"], abs=1e-4)


@pytest.mark.parametrize("spec", [
    {"lora": {}}, {"ia3": {}}, {"bottleneck": {"placement": "houlsby"}},
    {"bottleneck": {"placement": "pfeiffer", "size": 3, "activation": "gelu"}},
])
def test_adapters_start_exactly_at_the_base_model(spec, tiny_model_dir):
    from tailorkit.models.handle import load_text_classifier

    torch.manual_seed(0)
    plain = load_text_classifier(tiny_model_dir, "classes", ["neg", "pos"])
    torch.manual_seed(0)
    adapted = load_text_classifier(tiny_model_dir, "classes", ["neg", "pos"])
    apply_methods(adapted, [spec])
    batch = _batch(plain.tokenizer)
    assert torch.equal(_logits(plain.model, batch), _logits(adapted.model, batch))


def test_bottleneck_placement_counts(make_handle):
    for placement, per_block in (("houlsby", 2), ("pfeiffer", 1)):
        handle = make_handle()
        apply_methods(handle, [{"bottleneck": {"placement": placement, "size": 4}}])
        downs = [n for n in handle.trainable_names() if n.endswith("adapter.down.weight")]
        assert len(downs) == per_block * handle.num_blocks, placement


def test_adapter_set_gives_each_runs_own_outputs(runs):
    adapters = AdapterSet()
    adapters.add("lora", runs["lora"])
    adapters.add("lora3", runs["lora3"])  # three classes beside two, on one base
    for name in ("lora", "lora3", "lora"):
        shared = adapters.predict(TEXTS, name)
        alone = api.predict(runs[name], TEXTS)
        assert list(shared.columns) == list(alone.columns)
        assert shared.equals(alone), name
    assert set(adapters.handle.model.peft_config) == {"lora", "lora3"}  # one base model holds both


def test_adapter_set_refusals(runs):
    adapters = AdapterSet()
    adapters.add("lora", runs["lora"])
    with pytest.raises(TailorError, match="cannot join"):
        adapters.add("ia3", runs["ia3"])
    with pytest.raises(TailorError, match="trained base weights"):
        adapters.add("bitfit", runs["bitfit+lora"])
    with pytest.raises(TailorError, match="cannot share a base"):
        adapters.add("houlsby", runs["houlsby"])
    with pytest.raises(TailorError, match="no adapter 'nope'"):
        adapters.predict(TEXTS, "nope")


def test_cli_predict_picks_an_adapter(runs, capsys):
    from tailorkit.cli import main

    assert main(["predict", str(runs["lora"]), str(runs["lora3"]), "--adapter", "lora3",
                 "--text", TEXTS[0]]) == 0
    assert api.predict(runs["lora3"], TEXTS[:1])["prediction"][0] in capsys.readouterr().out
    assert main(["predict", str(runs["lora"]), str(runs["lora3"]), "--text", "x"]) == 2
    assert "--adapter" in capsys.readouterr().err
    # only the chosen run loads, so runs that could not share a base may be given together
    assert main(["predict", str(runs["lora"]), str(runs["ia3"]), "--adapter", "ia3", "--text", TEXTS[0]]) == 0
    assert api.predict(runs["ia3"], TEXTS[:1])["prediction"][0] in capsys.readouterr().out


def test_adapter_set_needs_pairs_for_a_pair_run(runs, tiny_model_dir, tmp_path, capsys):
    """A pair-trained adapter beside a plain one: no silent first-text-only answers."""
    from tailorkit.cli import main

    frame = make_sentences(64, seed=2).assign(pair=lambda f: f["text"].str.split().str[0])
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    recipe = recipe_dict(tiny_model_dir, tmp_path / "pairs.csv", tmp_path / "pairs", epochs=1, lr=2e-2)
    recipe["data"]["text_pair_column"] = "pair"
    pairs_run = api.train(recipe_from_dict({**recipe, "methods": [{"lora": {"r": 2}}]}))
    adapters = AdapterSet()
    adapters.add("lora", runs["lora"])
    adapters.add("pairs", pairs_run)
    with pytest.raises(TailorError, match="trained on text pairs"):
        adapters.predict(TEXTS, "pairs")
    with pytest.raises(TailorError, match="not trained on text pairs"):
        adapters.predict(TEXTS, "lora", ["good"] * len(TEXTS))
    second = ["good", "awful", "film"]
    assert adapters.predict(TEXTS, "pairs", second).equals(api.predict(pairs_run, TEXTS, second))

    both = [str(runs["lora"]), str(pairs_run), "--adapter", "pairs"]
    assert main(["predict", *both, "--text", TEXTS[0]]) == 2
    assert "--text-pair" in capsys.readouterr().err
    assert main(["predict", *both, "--text", TEXTS[0], "--text-pair", "good"]) == 0
    assert api.predict(pairs_run, TEXTS[:1], ["good"])["prediction"][0] in capsys.readouterr().out


def test_cli_merge_creates_the_parent_folders(runs, tmp_path, capsys):
    from tailorkit.cli import main

    out = tmp_path / "merged" / "topics"
    assert main(["merge", str(runs["lora"]), "--out", str(out)]) == 0
    assert (out / "config.json").is_file() and f"merged model written to {out}" in capsys.readouterr().out


def test_summary_reports_parameters_and_adapter_size(runs):
    summary = json.loads((runs["lora"] / "summary.json").read_text())
    params = summary["parameters"]
    assert 0 < params["trainable"] < params["total"]
    assert params["trainable_pct"] == pytest.approx(100 * params["trainable"] / params["total"], abs=1e-3)
    size = (runs["lora"] / "model" / "adapter_model.safetensors").stat().st_size / 2**20
    assert summary["artefact_mb"] == pytest.approx(size, abs=1e-3)


def test_bitfit_before_lora_saves_the_trained_biases(runs):
    assert (runs["bitfit+lora"] / "model" / "trained_base.safetensors").is_file()
    assert not (runs["lora"] / "model" / "trained_base.safetensors").exists()


def test_config_errors(make_handle):
    with pytest.raises(TailorError, match="init_from uses the adapter folder's own configuration"):
        apply_methods(make_handle(), [{"lora": {"init_from": "x", "r": 4}}])
    with pytest.raises(TailorError, match="one adapter method per recipe"):
        apply_methods(make_handle(), [{"lora": {}}, {"ia3": {}}])
    with pytest.raises(TailorError, match="init_text"):
        apply_methods(make_handle(), [{"prompt": {"init": "text"}}])
    with pytest.raises(TailorError, match="no adapter_config.json"):
        apply_methods(make_handle(), [{"lora": {"init_from": "/nonexistent"}}])


# -- what PEFT refuses, said in one line --------------------------------------------------------------

def test_peft_refusals_are_one_line_errors_naming_the_method(tiny_model_dir, runs, sentiment_csv, tmp_path):
    raw = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "run", max_steps=1)
    with pytest.raises(TailorError, match=r"^lora: PEFT refuses this configuration: .*the model's linear "
                                          r"layers, which targets may name: .*query"):
        api.train(recipe_from_dict({**raw, "methods": [{"lora": {"targets": ["nonexistent"]}}]}))
    prefix_folder = str(runs["prefix"] / "model")
    with pytest.raises(TailorError, match=rf"^lora.init_from: {prefix_folder}: PEFT refuses it: "):
        api.train(recipe_from_dict({**raw, "methods": [{"lora": {"init_from": prefix_folder}}]}))


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_virtual_tokens_and_max_length_must_fit_the_position_table(method, tiny_model_dir, sentiment_csv,
                                                                   tmp_path):
    """The tiny BERT has 64 positions: 33 virtual tokens + 32 text tokens would fail in its embeddings."""
    raw = recipe_dict(tiny_model_dir, sentiment_csv, tmp_path / "run", max_steps=1)
    with pytest.raises(TailorError, match=rf"^{method}.virtual_tokens: 33 virtual tokens \+ model.max_length "
                                          r"32 = 65 positions, but the model has 64"):
        api.train(recipe_from_dict({**raw, "methods": [{method: {"virtual_tokens": 33}}]}))
    assert api.train(recipe_from_dict({**raw, "methods": [{method: {"virtual_tokens": 32}}]})).is_dir()
