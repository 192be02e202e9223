"""docs/architecture.md's worked examples are real: each file it shows is loaded as the module
it names, registers itself, and trains in a real run. The registries are restored afterwards."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_sentences
from tailorkit import api, cli
from tailorkit.config.methods import METHOD_CONFIGS
from tailorkit.config.tasks import TASK_NAMES
from tailorkit.methods import METHODS
from tailorkit.recipe import recipe_from_dict
from tailorkit.tasks import TASKS

DOC = Path(__file__).parents[1] / "docs" / "architecture.md"


def example(path: str) -> str:
    """The code block under `<!-- example: PATH -->`."""
    match = re.search(rf"<!-- example: {re.escape(path)} -->\n```python\n(.*?)```", DOC.read_text(), re.S)
    assert match, f"docs/architecture.md has no example {path}"
    return match.group(1)


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Load a documented file as the tailorkit module its path names."""
    saved = [dict(t) for t in (METHODS, METHOD_CONFIGS, TASKS, TASK_NAMES)]

    def install(path: str) -> None:
        name = path.removeprefix("src/").removesuffix(".py").replace("/", ".")
        file = tmp_path / Path(path).name
        file.write_text(example(path))
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, name, module)
        spec.loader.exec_module(module)

    yield install
    for table, before in zip((METHODS, METHOD_CONFIGS, TASKS, TASK_NAMES), saved, strict=True):
        table.clear()
        table.update(before)


def test_the_method_example_registers_with_its_options_and_trains(installed, tiny_recipe, tmp_path):
    installed("src/tailorkit/methods/noisytune.py")
    with pytest.raises(Exception, match=r"methods\[0\]\.noisytune\.intensity"):
        recipe_from_dict({**tiny_recipe, "methods": [{"noisytune": {"intensity": -1}}]})
    run = api.train(recipe_from_dict({**tiny_recipe, "methods": [{"noisytune": {"intensity": 0.1}}]}))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["methods"] == [{"noisytune": {"intensity": 0.1}}]
    assert summary["parameters"]["trainable"] == summary["parameters"]["total"]
    # The noise really moved the base: a plain full fine-tune with the same seed ends elsewhere.
    plain = api.train(recipe_from_dict({**tiny_recipe, "output_dir": str(tmp_path / "plain")}))
    noisy_weights, plain_weights = (api.load_run(r)[1].model.state_dict() for r in (run, plain))
    assert not torch.equal(noisy_weights["bert.encoder.layer.0.attention.self.query.weight"],
                           plain_weights["bert.encoder.layer.0.attention.self.query.weight"])


def test_the_task_example_registers_and_reports_spearman(installed, tiny_model_dir, tmp_path, capsys):
    installed("src/tailorkit/tasks/similarity.py")
    frame = make_sentences(160)  # 40 test pairs: Spearman 0.77-0.83 over seeds 0-5 and 42 (80: 0.46-0.84)
    frame["second"] = frame["text"].str.split().str[::-1].str.join(" ")  # a pair per row
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    raw = {"task": "similarity", "model": {"name": str(tiny_model_dir), "max_length": 32},
           "data": {"train": str(tmp_path / "pairs.csv"), "text_pair_column": "second",
                    "label_column": "score", "split": {"validation": 0.25, "test": 0.25}},
           "train": {"epochs": 10, "batch_size": 8, "lr": 5e-3, "progress": False, "threads": 1},
           "output_dir": str(tmp_path / "run")}
    with pytest.raises(Exception, match="data.text_pair_column"):
        recipe_from_dict({**raw, "data": {**raw["data"], "text_pair_column": None}})
    (tmp_path / "sts.yaml").write_text(json.dumps(raw))
    assert cli.main(["train", str(tmp_path / "sts.yaml")]) == 0
    assert "spearman=" in capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert -1 <= summary["test"]["spearman"] <= 1 and not np.isnan(summary["test"]["spearman"])
    assert summary["test"]["spearman"] > 0.5  # the cue words carry the score
